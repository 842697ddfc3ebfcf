"""An email's HTML body served for the page's sandboxed frame, so that nothing in it can run, load or leave.

The frame's `sandbox` attribute (no allow-scripts, no allow-same-origin) already stops scripts, forms and
popups; this response says the same on its own, for whoever opens its URL directly: a CSP `sandbox`,
no scripts, no fetches, no images but those inside the message (data: and cid:, so no tracking
pixel reports that the operator read the mail), and only the page itself may frame it.
"""

from flask import make_response

PREVIEW_CSP = ("sandbox; default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")  # fmt: skip
NO_HTML = "<p style='font-family: sans-serif; color: #666'>This message has no HTML body.</p>"


def html_preview(html):
    """The response that shows `html` (an email's HTML body, or None) inside the page's frame."""
    response = make_response(html if html is not None else NO_HTML)
    response.mimetype = "text/html"  # Flask adds charset=utf-8
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
