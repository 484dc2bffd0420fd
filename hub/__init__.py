"""CartSnitch Hub: the REST API and real-time Socket.IO hub of the CartSnitch platform."""

__version__ = "0.1.0"
