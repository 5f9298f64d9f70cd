"""rezolus-sampler: the code behind the Rezolus sampler Copier template.

Rooms follow the flow of a sampler (ARCHITECTURE.md): `spec` (answers ->
checked spec), `emit` (layout and the facts the templates print), `tree`
(edits to a Rezolus checkout), `kernel` (compile, load, prove), and `cli`
(the `rezolus-sampler` command).
"""

__version__ = "0.2.0"
