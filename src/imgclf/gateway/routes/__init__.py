"""The gateway's HTTP routes, one module per resource; each only parses, calls the library and renders."""
