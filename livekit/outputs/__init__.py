"""Outputs: where displayed frames go beside the window. Recording (fragmented MP4 through PyAV with the live
audio muxed in, PNG sequences), NDI (cross-platform video over the network) and the platform-only Syphon
(macOS) and Spout (Windows) senders. Each takes finished HxWx3 uint8 frames, never the HUD, and a failing
output is reported once and never stops the show."""
