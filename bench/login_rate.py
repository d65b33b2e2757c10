"""How fast a stranger can open fresh sessions on the login page: the bound on password guesses once the
global count of wrong tries is past (then each guess needs a session that has not guessed wrong yet).

    python bench/login_rate.py [--sessions 200] [--threads 8]

Starts `streamlit run chat_app.py` with a password on 127.0.0.1 (the demo model; it is never loaded
before login) and, from `--threads` threads, opens `--sessions` websocket sessions with
tests/streamlit_wire.py, each running the login page once and closing. A guess costs at least that
(it also needs a second run with the form's value), so the rate printed is an upper bound on guesses
per second; README's Security section puts it into the arithmetic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_utils import StreamlitServer  # noqa: E402
from streamlit_wire import WireSession  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MINICPM_PASSWORD": "s3cret", "MINICPM_DEMO": "1", "MINICPM_DEVICE": "cpu",
               "MINICPM_DATA_DIR": str(Path(tmp) / "data")}
        with StreamlitServer(env, Path(tmp) / "app.log") as server:
            with WireSession(server.url) as warm:  # the first run imports the app's modules
                warm.run()
            left = [args.sessions]
            lock = threading.Lock()

            def worker() -> None:
                while True:
                    with lock:
                        if left[0] <= 0:
                            return
                        left[0] -= 1
                    with WireSession(server.url) as session:
                        session.run()

            threads = [threading.Thread(target=worker) for _ in range(args.threads)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
    rate = args.sessions / elapsed
    print(f"{args.sessions} fresh sessions on the login page from {args.threads} threads in {elapsed:.1f} s: "
          f"{rate:.0f} per second")
    for alphabet, size in (("lower-case letters and digits", 36), ("upper- and lower-case letters and digits", 62)):
        days = size ** 6 / 2 / rate / 86400
        print(f"  6 characters of {alphabet}: {size ** 6:.2e} passwords, {days:,.0f} days on average at this rate")


if __name__ == "__main__":
    main()
