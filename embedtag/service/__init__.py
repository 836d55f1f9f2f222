"""`embedtag serve`: the HTTP service. `app.create_app` puts it together (see app.py for the parts).

Imports go one way: `app` imports the route modules, the route modules import the batcher, and
nothing imports `app` back. This file imports nothing, so that reading one part of the service
does not read the others.
"""
