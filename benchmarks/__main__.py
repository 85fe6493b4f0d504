"""Run every benchmark and print the figures: `python -m benchmarks`."""

from benchmarks import burst, fetch_memory, image_time, local_stack


def main() -> None:
    fetch_memory.main()
    print()
    image_time.main()
    print()
    local_stack.main()
    print()
    burst.main([])


if __name__ == "__main__":
    main()
