"""Run every benchmark and print the figures: `python -m benchmarks`."""

from benchmarks import burst, cold_start, cost, fetch_memory, image_time, local_stack


def main() -> None:
    fetch_memory.main()
    print()
    image_time.main()
    print()
    cold_start.main([])
    print()
    local_stack.main()
    print()
    burst.main([])
    print()
    cost.main([])


if __name__ == "__main__":
    main()
