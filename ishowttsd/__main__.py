"""`python -m ishowttsd` starts the daemon."""

from ishowttsd.daemon import main

if __name__ == "__main__":
    raise SystemExit(main())
