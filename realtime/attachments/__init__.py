"""Work on attachment files off the event loop: photos (Pillow), voice (container parsing)."""
