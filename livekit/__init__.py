"""livekit package."""
