"""The real-time core: Engine.IO and Socket.IO, the event bus, delivery, ingest, identity."""
