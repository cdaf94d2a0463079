"""The fixed small coding tasks of ``bench.bench_agent``: files to start from, a description, mechanical checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BenchTask:
    name: str
    description: str
    checks: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    """Files the workspace starts with."""


def _py(code: str, description: str) -> dict[str, Any]:
    """A check running ``python3 -c code`` in the workspace."""
    return {"type": "command_succeeds", "target": f'python3 -c "{code}"', "description": description}


CALC_PY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC_PY = "from calc import add, mul\n\nassert add(2, 3) == 5, add(2, 3)\nassert mul(2, 3) == 6\nprint('PASS')\n"
SHAPES_PY = "def report(w, h, r):\n    rect = w * h\n    circle = 3.14159 * r * r\n    return rect, circle\n"
STATS_PY = "def mean(xs):\n    return sum(xs) / (len(xs) + 1)\n"
MAXIMUM_PY = "\n".join(
    [
        "def largest(xs):",
        "    best = xs[0]",
        "    for x in xs:",
        "        if x < best:",
        "            best = x",
        "    return best",
        "",
    ]
)

TASKS: list[BenchTask] = [
    BenchTask("fizzbuzz", "Create fizzbuzz.py with a function fizzbuzz(n) that returns a list of strings for 1..n: "
              "'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for both, else the number.",
              [_py("from fizzbuzz import fizzbuzz as f; r = f(15); assert r[0] == '1' and r[2] == 'Fizz' and "
                   "r[4] == 'Buzz' and r[14] == 'FizzBuzz', r", "fizzbuzz(15) is right")]),
    BenchTask("reverse_words", "Create words.py with a function reverse_words(s) that returns the words of s in "
              "reverse order, joined by single spaces.",
              [_py("from words import reverse_words as r; assert r('a b  c') == 'c b a', r('a b  c')",
                   "reverse_words('a b  c') == 'c b a'")]),
    BenchTask("is_prime", "Create primes.py with a function is_prime(n) that returns True when the integer n is a "
              "prime number, else False.",
              [_py("from primes import is_prime as p; assert [x for x in range(20) if p(x)] == [2, 3, 5, 7, 11, 13, "
                   "17, 19]", "the primes below 20")]),
    BenchTask("fix_add", "The test test_calc.py fails. Fix the bug in calc.py so that `python3 test_calc.py` passes.",
              [{"type": "test_passes", "target": "python3 test_calc.py"}],
              {"calc.py": CALC_PY, "test_calc.py": TEST_CALC_PY}),
    BenchTask("fix_mean", "mean() in stats.py returns the wrong value: mean([1, 2, 3]) must be 2.0. Fix it.",
              [_py("from stats import mean; assert mean([1, 2, 3]) == 2.0, mean([1, 2, 3])", "mean([1,2,3]) == 2")],
              {"stats.py": STATS_PY}),
    BenchTask("fix_largest", "largest() in maximum.py returns the smallest element instead of the largest. Fix it.",
              [_py("from maximum import largest; assert largest([3, 9, 1]) == 9", "largest([3,9,1]) == 9")],
              {"maximum.py": MAXIMUM_PY}),
    BenchTask("refactor_area", "Refactor shapes.py: add functions rect_area(w, h) and circle_area(r), and make "
              "report(w, h, r) use them. report must keep returning the same values.",
              [_py("from shapes import rect_area, circle_area, report; assert rect_area(2, 3) == 6; "
                   "assert abs(circle_area(1) - 3.14159) < 1e-9; assert report(2, 3, 1) == (6, 3.14159)",
                   "the helpers exist and report is unchanged"),
               {"type": "command_succeeds", "target": "grep -q 'rect_area(' shapes.py", "description": "uses it"}],
              {"shapes.py": SHAPES_PY}),
    BenchTask("palindrome", "Create text.py with a function is_palindrome(s) that returns True when s reads the same "
              "backwards, ignoring case and spaces.",
              [_py("from text import is_palindrome as p; assert p('Never odd or even') and not p('abc')",
                   "palindromes are recognised")]),
    BenchTask("count_vowels", "Create vowels.py with a function count_vowels(s) that returns how many of the "
              "characters of s are vowels (a, e, i, o, u, upper or lower case).",
              [_py("from vowels import count_vowels as c; assert c('Hello World') == 3 and c('xyz') == 0",
                   "count_vowels('Hello World') == 3")]),
    BenchTask("celsius", "Create temperature.py with a function c_to_f(c) that converts degrees Celsius to "
              "Fahrenheit (F = C * 9 / 5 + 32).",
              [_py("from temperature import c_to_f; assert c_to_f(100) == 212 and c_to_f(0) == 32",
                   "c_to_f(100) == 212")]),
    BenchTask("word_count", "Create counts.py with a function word_count(s) that returns a dict mapping each word "
              "of s (split on whitespace) to how many times it occurs.",
              [_py("from counts import word_count as w; assert w('a b a') == {'a': 2, 'b': 1}, w('a b a')",
                   "word_count('a b a')")]),
    BenchTask("hello_script", "Create greet.py: run as `python3 greet.py NAME` it prints `Hello, NAME!`.",
              [{"type": "command_succeeds", "target": "test \"$(python3 greet.py Ada)\" = 'Hello, Ada!'",
                "description": "python3 greet.py Ada prints Hello, Ada!"}]),
]  # fmt: skip
