"""placeholder"""


def main(duration: float = 20.0) -> int:
    return 0
