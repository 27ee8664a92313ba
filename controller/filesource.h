/*
 * filesource: file mode. Reads Kubernetes manifests (*.yaml, *.yml, *.json) from a folder
 * tree into a model_cache, and watches the tree with inotify.
 */
#ifndef STRAIT_FILESOURCE_H
#define STRAIT_FILESOURCE_H

#include <stddef.h>

#include "model.h"

/*
 * Loads every manifest under dir (recursively, in sorted path order) into cache and seals
 * it. Bad files and objects are logged (object_rejected) and skipped. If watch_fd >= 0 (from
 * filesource_watch_open) every folder visited is added to the watch. Returns 0, or -1 with
 * err filled when dir itself cannot be read (cache is then left empty).
 */
int filesource_load(const char *dir, int watch_fd, struct model_cache *cache, char *err,
                    size_t errlen);

/*
 * Parses one file's content (name is used for logs and to pick JSON over YAML by its
 * extension) and adds the objects it holds to cache (not sealed). Returns the number of
 * objects added, or -1 on allocation failure.
 */
int filesource_load_buffer(const char *name, const char *buf, size_t len,
                           struct model_cache *cache);

/* Non-blocking inotify descriptor, or -1 with err filled. */
int filesource_watch_open(char *err, size_t errlen);

/*
 * Reads every pending event from fd. Returns how many were read (any of them means "reload"),
 * 0 if none, -1 on error.
 */
int filesource_watch_drain(int fd);

#endif
