"""Pure helpers every layer may import (no I/O of the application, no SQL, no imports of our other packages):
the one masker of phone and ID numbers, the one atomic file write, whether a process still runs."""
