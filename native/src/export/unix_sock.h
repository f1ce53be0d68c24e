/* Unix socket helpers shared by the exports. */
#ifndef FLEXBSO_UNIX_SOCK_H
#define FLEXBSO_UNIX_SOCK_H

#include <stdbool.h>
#include <sys/un.h>

/* A stale unix socket (no server behind it) may be replaced; a live one not. */
bool fb_unix_path_stale(const struct sockaddr_un *sun);

#endif
