"""presence: a realtime presence and seat-licensing server."""
