"""The routers, one module per resource. Resource routers live under :data:`API_PREFIX`; the
health probes (``health``) are unversioned, as load balancers and orchestrators expect."""

API_PREFIX = "/v1"
