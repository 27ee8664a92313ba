/*
 * containerof: the struct that holds a member, from a pointer to the member (libev hands
 * callbacks the watcher; the watcher lives inside the connection, timer or set it serves).
 */
#ifndef STRAIT_CONTAINEROF_H
#define STRAIT_CONTAINEROF_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
