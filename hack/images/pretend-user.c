/*
 * Preloaded into PostgreSQL in the lab's services image, which runs it as root: getuid() and
 * geteuid() answer $FERRY_PRETEND_UID. PostgreSQL refuses to run as root, and the lab's hosts cannot
 * checkpoint a process of another user (their root lacks CAP_SYS_RESOURCE, so the kernel refuses
 * CRIU that process's resource limits; see the README's "Moving real services"). Everything else
 * of PostgreSQL is Debian's, unchanged.
 */
#include <stdlib.h>
#include <sys/types.h>

static uid_t pretended(void)
{
	const char *uid = getenv("FERRY_PRETEND_UID");
	return uid ? (uid_t)strtoul(uid, NULL, 10) : 0;
}

uid_t getuid(void) { return pretended(); }
uid_t geteuid(void) { return pretended(); }
