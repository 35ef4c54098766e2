#!/usr/bin/env python3
"""structure.py finds each kind of problem it is there for, and passes a tree without them."""
import os, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import structure


def tree(files):
    root = tempfile.mkdtemp()
    for path, text in files.items():
        path = os.path.join(root, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return root


CLEAN = {
    "crates/a/src/lib.rs": "mod status;\nmod stats;\npub use status::Status;\n",
    "crates/a/src/status.rs": "pub enum Status { Up }\n",
    "crates/a/src/stats.rs": "use crate::status::Status;\nfn f(_: Status) {}\n",
}
assert structure.check(tree(CLEAN)) == [], structure.check(tree(CLEAN))

# A type the crate root defines, imported by a module it declares: through `crate::`, through
# `super::`, and inside nested braces.
for using in [
    "use crate::Status;\n",
    "use super::Status;\n",
    "use crate::{other::{x, y}, Status};\n",
    "fn f(_: crate::Status) {}\n",
]:
    root = tree(
        {
            "crates/a/src/lib.rs": "mod stats;\npub enum Status { Up }\n",
            "crates/a/src/stats.rs": using,
        }
    )
    found = structure.check(root)
    assert len(found) == 1 and "imports ['Status'] defined in" in found[0], (using, found)

# A method of a type in lib.rs is not an item of the root.
root = tree(
    {
        "crates/a/src/lib.rs": "mod x;\npub struct S;\nimpl S {\n    pub fn command(&self) {}\n}\n",
        "crates/a/src/x.rs": "use crate::command;\n",
    }
)
assert structure.check(root) == [], structure.check(root)

# A cycle between two modules, and a file past the line limit.
root = tree(
    {
        "src/lib.rs": "mod a;\nmod b;\n",
        "src/a.rs": "use crate::b::B;\npub struct A;\n",
        "src/b.rs": "use crate::a::A;\npub struct B;\n" + "\n" * structure.MAX_LINES,
    }
)
found = structure.check(root)
assert any("cycle: ['a', 'b']" in p for p in found), found
assert any("b.rs" in p and "lines" in p for p in found), found
print("structure_test: ok")
