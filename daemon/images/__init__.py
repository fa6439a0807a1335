"""Images: the image store's service, references, save/load, commit, import changes."""
