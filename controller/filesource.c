/*
 * filesource: file mode input. Walks a manifest folder, parses each file (YAML streams via
 * libyaml, JSON via yajl), expands Lists, decodes objects into a model_cache; watches the
 * tree with inotify.
 *
 * Does: recursive walk in sorted path order (so "first definition wins" is deterministic),
 * symlinked files (ConfigMap volumes), cycle-safe recursion, per-file and per-object error
 * isolation. Does not: incremental updates (every change reloads the whole tree, which is
 * cheap at file-mode sizes and cannot drift), or interpret objects beyond decoding.
 * Invariants: names starting with '.' are skipped: editor swap files, and the "..data" /
 * "..2024_..." folders of ConfigMap volumes that would otherwise load every object twice.
 * Folders are added to the inotify watch before they are listed, so a file created during
 * the walk is either seen by the walk or produces an event.
 */
#include "filesource.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kobj.h"
#include "kube_decode.h"
#include "log.h"

#define FS_MAX_DEPTH 32
#define FS_MAX_FILE (16u << 20)
#define FS_MAX_LIST_NESTING 4
#define FS_WATCH_MASK                                                                              \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO |            \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct fs_paths {
    char **v;
    size_t n, cap;
};

/* Logs one rejected file or object and counts it in cache->n_rejected. */
static void fs_reject(struct model_cache *cache, const char *file, const char *kind,
                      const char *object, const char *reason)
{
    char fq[600], q[700];

    cache->n_rejected++;
    log_warn("object_rejected", "file=%s kind=%s object=%s reason=%s",
             model_log_value(fq, sizeof(fq), file), kind, object, log_quote(q, sizeof(q), reason));
}

static int fs_wanted(const char *name)
{
    static const char *ext[] = {".yaml", ".yml", ".json"};
    size_t n = strlen(name), i, el;

    for (i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        el = strlen(ext[i]);
        if (n > el && !strcmp(name + n - el, ext[i])) return 1;
    }
    return 0;
}

static int fs_paths_push(struct fs_paths *p, char *path)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        char **v = realloc(p->v, cap * sizeof(*v));
        if (!v) {
            free(path);
            return -1;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = path;
    return 0;
}

static void fs_paths_free(struct fs_paths *p)
{
    size_t i;

    for (i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
}

/* Identity of the folders on the current recursion path, to stop symlink loops. */
struct fs_walk {
    dev_t dev[FS_MAX_DEPTH];
    ino_t ino[FS_MAX_DEPTH];
    int depth;
    int watch_fd;
    struct fs_paths files;
};

static int fs_walk_dir(struct fs_walk *w, const char *dir, char *err, size_t errlen)
{
    struct dirent *de;
    struct stat st;
    DIR *d;
    char *path;
    int i, rc = -1;

    if (stat(dir, &st)) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a folder", dir);
        return -1;
    }
    for (i = 0; i < w->depth; i++)
        if (w->dev[i] == st.st_dev && w->ino[i] == st.st_ino)
            return 0; /* a symlink back up the tree: already being walked */
    if (w->depth >= FS_MAX_DEPTH) {
        log_warn("folder_skipped", "path=%s reason=\"nesting deeper than %d\"", dir, FS_MAX_DEPTH);
        return 0;
    }
    if (w->watch_fd >= 0 && inotify_add_watch(w->watch_fd, dir, FS_WATCH_MASK) < 0)
        log_warn("watch_failed", "path=%s error=\"%s\"", dir, strerror(errno));
    if (!(d = opendir(dir))) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    w->dev[w->depth] = st.st_dev;
    w->ino[w->depth] = st.st_ino;
    w->depth++;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (stat(path, &st)) {
            /* dangling symlink, or removed while we walk: the next event reloads anyway */
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            /* a broken subfolder must not hide the rest of the tree */
            if (fs_walk_dir(w, path, err, errlen))
                log_warn("folder_skipped", "path=%s reason=\"%s\"", path, err);
            free(path);
        } else if (S_ISREG(st.st_mode) && fs_wanted(de->d_name)) {
            if (fs_paths_push(&w->files, path)) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
        } else {
            free(path);
        }
    }
    rc = 0;
out:
    w->depth--;
    closedir(d);
    return rc;
}

static void fs_add_doc(const char *name, const struct kobj *doc, struct model_cache *cache,
                       int nesting, int *added, int *oom)
{
    const struct kobj *items = kube_decode_list_items(doc);
    struct kube_ident id;
    struct model_meta *obj;
    char reason[512];
    size_t i;
    int rc;

    if (items) {
        if (nesting >= FS_MAX_LIST_NESTING) {
            fs_reject(cache, name, "List", "-", "Lists nested too deeply");
            return;
        }
        for (i = 0; i < items->n; i++)
            fs_add_doc(name, items->items[i], cache, nesting + 1, added, oom);
        return;
    }
    rc = kube_decode_keep(doc, NULL, NULL, name, &obj, &id, reason, sizeof(reason));
    if (rc < 0 || rc == 2) fs_reject(cache, name, id.kind, id.object, reason);
    if (rc == 0) {
        log_debug("object_ignored", "file=%s kind=%s object=%s reason=\"%s\"", name, id.kind,
                  id.object, reason);
    } else if (rc > 0) {
        /* rc 2: an invalid Gateway, kept so that its status says why it is not served */
        if (model_cache_add(cache, obj))
            *oom = 1;
        else
            (*added)++;
    }
}

int filesource_load_buffer(const char *name, const char *buf, size_t len, struct model_cache *cache)
{
    struct kobj_docs docs;
    char err[512];
    size_t n = strlen(name), i;
    int added = 0, oom = 0, rc;

    if (n > 5 && !strcmp(name + n - 5, ".json"))
        rc = kobj_parse_json(buf, len, &docs, err, sizeof(err));
    else
        rc = kobj_parse_yaml(buf, len, &docs, err, sizeof(err));
    if (rc) fs_reject(cache, name, "-", "-", err);
    /* documents completed before a YAML error are still good objects */
    for (i = 0; i < docs.n; i++)
        fs_add_doc(name, docs.docs[i], cache, 0, &added, &oom);
    kobj_docs_free(&docs);
    return oom ? -1 : added;
}

static int fs_load_file(const char *path, struct model_cache *cache)
{
    struct stat st;
    char *buf = NULL, reason[256];
    size_t got = 0;
    ssize_t r;
    int fd, rc = 0;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) goto io_error;
    if (fstat(fd, &st)) goto io_error;
    if ((size_t)st.st_size > FS_MAX_FILE) {
        snprintf(reason, sizeof(reason), "file larger than %u bytes", FS_MAX_FILE);
        fs_reject(cache, path, "-", "-", reason);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        rc = -1;
        goto out;
    }
    /* the file may grow while we read: take what fstat promised, the next event reloads */
    while (got < (size_t)st.st_size) {
        r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) goto io_error;
        if (r == 0) break;
        got += (size_t)r;
    }
    rc = filesource_load_buffer(path, buf, got, cache) < 0 ? -1 : 0;
    goto out;
io_error:
    snprintf(reason, sizeof(reason), "cannot read: %s", strerror(errno));
    fs_reject(cache, path, "-", "-", reason);
out:
    free(buf);
    if (fd >= 0) close(fd);
    return rc;
}

static int fs_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int filesource_load(const char *dir, int watch_fd, struct model_cache *cache, char *err,
                    size_t errlen)
{
    struct fs_walk w;
    size_t i;
    int rc = -1;

    memset(&w, 0, sizeof(w));
    w.watch_fd = watch_fd;
    model_cache_init(cache);
    if (fs_walk_dir(&w, dir, err, errlen)) goto out;
    if (w.files.n > 1) qsort(w.files.v, w.files.n, sizeof(*w.files.v), fs_cmp_str);
    for (i = 0; i < w.files.n; i++) {
        if (fs_load_file(w.files.v[i], cache)) {
            snprintf(err, errlen, "out of memory");
            model_cache_free(cache);
            goto out;
        }
    }
    model_cache_seal(cache);
    rc = 0;
out:
    fs_paths_free(&w.files);
    return rc;
}

int filesource_watch_open(char *err, size_t errlen)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

    if (fd < 0) snprintf(err, errlen, "inotify_init1: %s", strerror(errno));
    return fd;
}

int filesource_watch_drain(int fd)
{
    _Alignas(struct inotify_event) char buf[8192];
    const struct inotify_event *ev;
    ssize_t r;
    char *p;
    int n = 0;

    for (;;) {
        r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? n : -1;
        if (r == 0) return n;
        for (p = buf; p < buf + r; p += sizeof(*ev) + ev->len) {
            ev = (const struct inotify_event *)p;
            /* IN_IGNORED only says a watch went away with its folder; the delete event
             * that caused it already counts */
            if (!(ev->mask & IN_IGNORED)) n++;
        }
    }
}
