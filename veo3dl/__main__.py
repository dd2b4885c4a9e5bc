"""``python -m veo3dl``: the same as the ``veo3dl`` command."""

from veo3dl._cli import main

if __name__ == "__main__":
    main()
