#!/usr/bin/env bash
# The system packages the full test suite uses, beyond python3 (called by `make test`):
#   xvfb xdotool x11-apps imagemagick  the real-window tests (tests/test_real_window*.py)
#   fuse3 libfuse3-3                   the power-cut suite, R7 (tests/test_reliability_power.py)
#   chromium                           browser play, gymrec-serve (tests/test_serve_browser.py; playwright
#                                      drives it through executable_path and never downloads a browser)
# As root on Debian/Ubuntu (a fresh CI machine, a container) they are installed with apt-get.
# Otherwise nothing is installed: one line per suite says that it will skip, and what to install.
# Set GYMREC_NO_APT=1 to never install.
set -uo pipefail

have_window_tools() { command -v Xvfb >/dev/null && command -v xdotool >/dev/null && command -v import >/dev/null; }
have_chromium() { [ -x /usr/bin/chromium ]; }
have_fuse() { command -v fusermount3 >/dev/null && ldconfig -p 2>/dev/null | grep -q libfuse3; }

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${GYMREC_NO_APT:-}" ]; }

missing=()
have_window_tools || missing+=(xvfb xdotool x11-apps imagemagick)
have_fuse || missing+=(fuse3 libfuse3-3)
have_chromium || missing+=(chromium)
[ ${#missing[@]} = 0 ] && exit 0

if can_install; then
    echo "make test: installing ${missing[*]} (apt-get) for the real-window, power-cut and browser suites"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1; then
        echo "make test: apt-get could not install ${missing[*]}; the suites below will skip"
    fi
fi
have_window_tools || echo "make test: the real-window tests will skip: no Xvfb/xdotool/import (install xvfb xdotool x11-apps imagemagick)"
have_fuse || echo "make test: the power-cut suite (R7) will skip: no FUSE 3 (install fuse3 libfuse3-3; it also needs /dev/fuse)"
have_chromium || echo "make test: the browser tests (gymrec-serve, gymrec-view) will skip: no /usr/bin/chromium (install chromium)"
exit 0
