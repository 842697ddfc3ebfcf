"""All SQL of the service, one module per table family; every function takes a cursor."""
