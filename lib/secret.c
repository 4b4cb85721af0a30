/* secret: see secret.h. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "log.h"

static const struct errtext secret_errors[] = {
	{SECRET_ERANDOM, "no random bytes"},
	{SECRET_EOPEN, "secret file cannot be opened"},
	{SECRET_EPERMS, "secret file is readable by others and cannot be tightened"},
	{SECRET_EWRITE, "secret file cannot be written"},
	{SECRET_ERENAME, "secret file cannot be replaced"},
};

const char *secret_strerror(int code)
{
	return ERRTEXT_LOOKUP(secret_errors, code);
}

int secret_random_hex(char *out, size_t bytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char buf[64];

	if (bytes > sizeof(buf) || RAND_bytes(buf, (int)bytes) != 1)
		return SECRET_ERANDOM;
	for (size_t i = 0; i < bytes; i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 0xf];
	}
	out[2 * bytes] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/* Reads the token file into out ("" when missing). Tightens a file others
 * can read to 0600, or fails when that is impossible. */
int secret_file_read(const char *path, const char *var, char *out, size_t outlen, char *err, size_t errlen)
{
	struct stat sb;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	out[0] = '\0';
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: cannot open %s: %s", var, path, strerror(errno));
		return SECRET_EOPEN;
	}
	if (fstat(fd, &sb) == 0 && (sb.st_mode & 077)) {
		if (fchmod(fd, 0600) != 0) {
			snprintf(err, errlen,
				 "%s: %s is readable by others and cannot be "
				 "tightened to 0600: %s",
				 var, path, strerror(errno));
			close(fd);
			return SECRET_EPERMS;
		}
		log_warnx("secret: %s was readable by others; tightened to 0600", path);
	}
	n = read(fd, out, outlen - 1);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, " \t\r\n")] = '\0';
	return 0;
}

/* Atomically replaces the token file (0600 from the first byte). */
int secret_file_write(const char *path, const char *var, const char *token, char *err, size_t errlen)
{
	char tmp[4096], dirbuf[4096];
	int fd, dfd, rc = SECRET_EWRITE;
	size_t len = strlen(token);

	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, token, len) != (ssize_t)len || fsync(fd) != 0) {
		snprintf(err, errlen, "%s: cannot write %s: %s", var, tmp, strerror(errno));
		goto out;
	}
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: cannot replace %s: %s", var, path, strerror(errno));
		rc = SECRET_ERENAME;
		goto out;
	}
	snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	if ((dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc != 0)
		unlink(tmp);
	return rc;
}
