from bench.cli import main
from bench.lifeline import exit_now

if __name__ == "__main__":
    exit_now(main())
