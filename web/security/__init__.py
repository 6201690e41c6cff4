"""Security for the HTML layer: response headers (CSP), cookies, CSRF and signing.

Everything here is pure ASGI or plain functions: no ``BaseHTTPMiddleware`` (a task and a stream
per request), and nothing that knows about pages.
"""
