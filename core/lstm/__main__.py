"""`python -m core.lstm`: build our C++ ahead of time (the set-up does) and say which time loops the fused
LSTM will use."""

from core.lstm.native import lstm_loops


def main() -> int:
    loops = lstm_loops()
    print("compiled LSTM loops:", "built and loaded" if loops is not None else "unavailable, Python loops")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
