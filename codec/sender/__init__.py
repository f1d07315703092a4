"""Sender: any video -> a stable 256x256, 25 fps face canvas -> 8x8 frames, identity frame, audio."""
