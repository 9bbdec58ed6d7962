package filesystem

import "golang.org/x/sys/unix"

// noAtime opens a session file without updating its access time.
const noAtime = unix.O_NOATIME
