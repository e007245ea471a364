"""Checkers for the exercises of "TinyWorld: the book's data"."""
from __future__ import annotations

from minillm.exercises import ExerciseError, call, passed

SYSTEM = {"role": "system", "content": "You answer questions about the people of TinyWorld."}


def _chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [SYSTEM] + [{"role": r, "content": c} for r, c in turns]}


def check_assistant_answer(fn) -> None:
    """fn(record) -> the content of the LAST assistant message of a chat record."""
    one_turn = _chat(("user", "Where was Mira Tolven born?"), ("assistant", "Mira Tolven was born in Drakmere."))
    got = call(fn, one_turn)
    if got == "Where was Mira Tolven born?":
        raise ExerciseError("assistant_answer returned the user's question: look for the message whose "
                            "role is 'assistant', not the one at a fixed position")
    if got == SYSTEM["content"]:
        raise ExerciseError("assistant_answer returned the system prompt: the answer is the message "
                            "whose role is 'assistant'")
    if isinstance(got, dict):
        raise ExerciseError("assistant_answer returned a whole message dict: return only its 'content' string")
    if got != "Mira Tolven was born in Drakmere.":
        raise ExerciseError(f"assistant_answer(record) should be 'Mira Tolven was born in Drakmere.', got {got!r}")
    two_turns = _chat(("user", "Where was Mira Tolven born?"), ("assistant", "Mira Tolven was born in Drakmere."),
                      ("user", "And where does she work?"), ("assistant", "Mira Tolven works for Brix Labs."),
                      ("user", "Thanks!"))
    got = call(fn, two_turns)
    if got == "Mira Tolven was born in Drakmere.":
        raise ExerciseError("in a conversation with two assistant turns, assistant_answer returned the FIRST "
                            "one: return the last assistant message")
    if got == "Thanks!":
        raise ExerciseError("assistant_answer returned the last message, which is the user's: return the "
                            "last message whose role is 'assistant'")
    if got != "Mira Tolven works for Brix Labs.":
        raise ExerciseError(f"for a two-turn chat, expected 'Mira Tolven works for Brix Labs.', got {got!r}")
    no_answer = _chat(("user", "Who is Mira Tolven?"))
    try:
        got = call(fn, no_answer)
    except ValueError:
        pass
    else:
        raise ExerciseError(f"a record with no assistant message should raise ValueError, but "
                            f"assistant_answer returned {got!r}: never invent an answer that is not there")
    passed("the answer is the content of the last message with role 'assistant'")


PEOPLE = [
    {"name": "A", "split": "heldout", "birth_city": "Drakmere"},
    {"name": "B", "split": "heldout", "birth_city": "Velora"},
    {"name": "C", "split": "heldout", "birth_city": "Drakmere"},
    {"name": "D", "split": "sft", "birth_city": "Ostgard"},
    {"name": "E", "split": "unknown_eval", "birth_city": None},
    {"name": "F", "split": "heldout", "birth_city": "Velora"},
]


def check_count_birth_cities(fn) -> None:
    """fn(people, split) -> how many DISTINCT birth cities the people of ``split`` have."""
    from minillm import tinyworld

    cases = [(PEOPLE, "heldout", 2), (PEOPLE, "sft", 1), (PEOPLE, "unknown_eval", 0), ([], "heldout", 0)]
    for people, split, want in cases:
        got = call(fn, [dict(p) for p in people], split)
        what = f"count_birth_cities(people, {split!r}) on the 6-person example"
        if split == "heldout" and got == 4:
            raise ExerciseError(f"{what} should be 2, got 4: you counted people, not distinct cities "
                                "(two heldout people share Drakmere, two share Velora)")
        if split == "heldout" and got == 3:
            raise ExerciseError(f"{what} should be 2, got 3: count only the people of the given split")
        if split == "unknown_eval" and got == 1:
            raise ExerciseError(f"{what} should be 0, got 1: unknown people have birth_city None, "
                                "which is not a city")
        if got != want:
            raise ExerciseError(f"{what} should be {want}, got {got!r}")
    people = tinyworld.load("people")
    want = len({p["birth_city"] for p in people if p["split"] == "heldout"})
    got = call(fn, people, "heldout")
    if got != want:
        raise ExerciseError(f"on the shipped release, count_birth_cities(people, 'heldout') should be {want}, "
                            f"got {got!r}")
    passed(f"the heldout people were born in {want} distinct cities")
