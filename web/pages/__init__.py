"""Page routes, one module (later one package: store, console, portal, claim) per area.

A page route translates HTTP to one domain call and back: read the form or query
(:mod:`web.forms`), call one domain function, render a template (:func:`web.render_page`) or
redirect. No business rule lives in a route or a template.
"""
