"""Another user's symbolic link, for the planted-link tests: tests cannot make a link owned by
someone else without root, so the process runs as another uid than the link's owner."""
import os


def as_another_user(monkeypatch, link):
    """From now on this process runs (os.geteuid) as a user other than ``link``'s owner."""
    other = link.lstat().st_uid + 1
    monkeypatch.setattr(os, "geteuid", lambda: other)
