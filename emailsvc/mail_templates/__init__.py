"""Templates: message texts kept per project, versioned, rendered with a client's variables.

engine.py compiles and renders them in a sandbox that bounds their work; rendering.py is the one
place a send (single or batch) turns a template reference into subject, body and html.
"""
