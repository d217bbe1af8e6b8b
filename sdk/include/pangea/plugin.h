/*
 * pangea/plugin.h: the part of Pangea's plugin ABI shared by every plugin kind.
 *
 * A plugin library is a shared object that exports exactly one symbol, its entry point
 * (PANGEA_PLUGIN_ENTRY_SYMBOL). The entry point hands the host a pangea_library: a list of
 * pangea_plugin_info descriptors, one per plugin the library provides. Each descriptor points at
 * a kind-specific vtable (pangea/compress.h, transport.h, optim.h, storage.h) whose first member
 * is a pangea_vtable_header.
 *
 * Rules that keep the ABI stable (docs/plugin-abi.md numbers them):
 * - Every struct that crosses the boundary starts with its size in bytes (struct_size) and only
 *   ever grows at the end. A reader never touches a field that lies beyond struct_size.
 * - Only C types cross: no C++ exception, no STL type, no allocation freed on the other side.
 * - Functions return a pangea_status; details go to the instance's last_error() text.
 * - Strings are UTF-8 and NUL-terminated; "borrowed" means the callee must copy what it keeps.
 *
 * Compiles as C99 (with -pedantic) and as C++.
 */
#ifndef PANGEA_PLUGIN_H
#define PANGEA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- ABI version ------------ */

/* The ABI this header describes. The major changes only when a released struct or function
 * would have to change incompatibly (then the entry symbol's name changes too); the minor grows
 * when fields, functions, flags or status codes are appended. Each released version's structs
 * are kept, frozen, in pangea/v1_0/, pangea/v1_1/, ...; the host adapts every one of them.
 *   1.0  the first ABI
 *   1.1  transport: the optional allreduce_sum_f32 slot
 *   1.2  PANGEA_ERR_NO_SPACE; compress: the error_bound slot and PANGEA_COMPRESS_CAP_IDENTITY;
 *        the handshake is a negotiation (pangea_library.abi_version answers the host's offer)
 *   1.3  optim: the optional range_state_size, save_state_range and load_state_range slots
 *   1.4  compress: PANGEA_COMPRESS_CAP_GATHER (all-gather aggregation); the host acts on
 *        PANGEA_COMPRESS_CAP_ERROR_FEEDBACK */
#define PANGEA_ABI_MAJOR 1
#define PANGEA_ABI_MINOR 4
#define PANGEA_ABI_VERSION ((uint32_t)((PANGEA_ABI_MAJOR << 16) | PANGEA_ABI_MINOR))
#define PANGEA_ABI_VERSION_MAJOR(v) ((uint32_t)(v) >> 16)
#define PANGEA_ABI_VERSION_MINOR(v) ((uint32_t)(v)&0xffffu)

/* ---------------------------------------------------------------- status codes ----------- */

/* Every function of the ABI that can fail returns one of these. A plugin that fails also sets
 * its instance's last_error() text (or, where there is no instance yet, calls
 * pangea_host.report_error) to say what failed and where. */
typedef enum pangea_status {
    /* The call did what it says. */
    PANGEA_OK = 0,

    /* The caller broke the function's contract: a NULL where a pointer is required, a size of
     * zero where one is not allowed, a handle from another instance. A bug in the caller; retrying
     * the same call fails the same way. */
    PANGEA_ERR_INVALID_ARGUMENT = 1,

    /* A setting's value was rejected: out of range, not one of the allowed choices, or two
     * settings that contradict each other. The message names the setting and what was expected.
     * Also returned by the host's config lookup for a key that exists with another type. */
    PANGEA_ERR_CONFIG = 2,

    /* The plugin does not offer this optional operation or capability. The caller may fall back
     * to another path; nothing has changed. */
    PANGEA_ERR_UNSUPPORTED = 3,

    /* Memory (or another finite local resource: file descriptors, threads) ran out. */
    PANGEA_ERR_NO_MEMORY = 4,

    /* The operating system, the disk or the network failed (errno-style failure). The message
     * carries the system's own text. Retrying later may succeed. */
    PANGEA_ERR_IO = 5,

    /* The operation did not complete within its time limit. Nothing was lost on the caller's
     * side: buffers handed in are intact, and the operation may be retried. */
    PANGEA_ERR_TIMEOUT = 6,

    /* The remote peer is gone (connection reset, closed, or declared dead by the mesh). */
    PANGEA_ERR_PEER_LOST = 7,

    /* The operation was cancelled by an abort() from another thread before it completed. */
    PANGEA_ERR_ABORTED = 8,

    /* Input bytes are malformed: a bad magic or version, a truncated buffer, a length that does
     * not match, a failed checksum. Never a crash, never an unbounded allocation. */
    PANGEA_ERR_CORRUPT = 9,

    /* An output buffer is too small for the result. Nothing was written past its capacity. */
    PANGEA_ERR_CAPACITY = 10,

    /* The named thing does not exist: a storage key, a config key (from the host's lookup). */
    PANGEA_ERR_NOT_FOUND = 11,

    /* Not done yet: a non-blocking call asks to be called again later. Not a failure. */
    PANGEA_ERR_AGAIN = 12,

    /* The two sides of the ABI do not speak a common version (see the entry point). */
    PANGEA_ERR_VERSION = 13,

    /* The data is well formed but its values are not acceptable: NaN or Inf where finite values
     * are required, a count that does not match the configured size. */
    PANGEA_ERR_INVALID_DATA = 14,

    /* Anything else: a bug or an unexpected state inside the plugin (an exception it caught at
     * the boundary, for example). The message says what happened. */
    PANGEA_ERR_INTERNAL = 15,

    /* (1.2) A disk, a quota or another store ran out of space ("No space left on device").
     * Retrying after space is freed may succeed. Returned only to hosts of ABI 1.2 or later
     * (pangea_host.abi_version); an older host gets PANGEA_ERR_IO instead. A host treats a
     * status it does not know as PANGEA_ERR_INTERNAL. */
    PANGEA_ERR_NO_SPACE = 16
} pangea_status;

/* ---------------------------------------------------------------- plugin kinds ----------- */

typedef enum pangea_plugin_kind {
    PANGEA_KIND_TRANSPORT = 1, /* moves bytes between nodes (pangea/transport.h) */
    PANGEA_KIND_COMPRESS = 2,  /* encodes fp32 buffers for the wire (pangea/compress.h) */
    PANGEA_KIND_OPTIM = 3,     /* the outer optimizer of DiLoCo (pangea/optim.h) */
    PANGEA_KIND_STORAGE = 4    /* stores checkpoint objects (pangea/storage.h) */
} pangea_plugin_kind;

/* ---------------------------------------------------------------- settings --------------- */

typedef enum pangea_setting_type {
    PANGEA_SETTING_STRING = 1,
    PANGEA_SETTING_INT = 2,   /* int64_t */
    PANGEA_SETTING_FLOAT = 3, /* double; an integer literal in the manifest is accepted too */
    PANGEA_SETTING_BOOL = 4
} pangea_setting_type;

/* One setting a plugin accepts in its manifest section. The host validates the manifest against
 * these before create() is called, so the plugin only ever sees values of the declared type that
 * lie inside the declared range or choices. All strings are static (owned by the library, valid
 * while it is loaded). */
typedef struct pangea_setting {
    /* lower_snake_case, unique within the plugin; never "plugin" or "library" (the host's). */
    const char* name;
    pangea_setting_type type;
    /* The default as text ("4", "0.7", "true", "min-max"), parsed by the host with the setting's
     * type; NULL makes the setting required. */
    const char* default_value;
    /* One line for `pangea plugins show`. */
    const char* help;
    /* INT and FLOAT: the inclusive range of accepted values; ignored when min_value > max_value. */
    double min_value;
    double max_value;
    /* STRING: the accepted values separated by '|' ("min-max|sigma"), or NULL for any string. */
    const char* choices;
} pangea_setting;

#define PANGEA_SETTING_SIZE_1_0 (offsetof(pangea_setting, choices) + sizeof(const char*))

/* ---------------------------------------------------------------- host services ---------- */

typedef enum pangea_log_level {
    PANGEA_LOG_DEBUG = 0,
    PANGEA_LOG_INFO = 1,
    PANGEA_LOG_WARN = 2,
    PANGEA_LOG_ERROR = 3
} pangea_log_level;

/* What the host offers a plugin instance. The host builds one per instance, passes it to
 * create(), and keeps it (and everything it points to) valid until destroy() returns, so the
 * instance may keep the pointer. Every function may be called from any thread. Plugins reach the
 * host only through this table: they never link the core. */
typedef struct pangea_host {
    uint32_t struct_size;  /* sizeof(pangea_host) as the host was built */
    uint32_t abi_version;  /* PANGEA_ABI_VERSION of the host */
    void* context;         /* opaque; pass it back as the first argument of every call below */

    /* Writes a line to the run's log, tagged with the plugin's kind and name. `message` is
     * borrowed. */
    void (*log)(void* context, pangea_log_level level, const char* message);

    /* Typed lookups of the instance's settings (its manifest section after defaults and
     * overrides). Each returns PANGEA_OK and writes *out, PANGEA_ERR_NOT_FOUND when no such key
     * is set, or PANGEA_ERR_CONFIG when the key holds another type (the out value is untouched
     * in both error cases). A string written to *out is owned by the host and valid until the
     * instance is destroyed. */
    pangea_status (*config_string)(void* context, const char* key, const char** out);
    pangea_status (*config_int)(void* context, const char* key, int64_t* out);
    pangea_status (*config_float)(void* context, const char* key, double* out);
    pangea_status (*config_bool)(void* context, const char* key, int* out);

    /* Tells the host about a failure that has no call to return it from: why create() failed
     * (there is no instance to ask last_error() of yet) or an error on a background thread.
     * `message` is borrowed. */
    void (*report_error)(void* context, pangea_status status, const char* message);

    /* ---- Appended in 1.2: check struct_size before calling these (PANGEA_HOST_SIZE_1_0 is the
     * size without them). */

    /* Opens another plugin through the host's own loader, for a plugin that wraps one (fault
     * injection, tracing), like SQLite's VFS shims: the host finds, negotiates with, adapts and
     * configures it as it would for a manifest section, so the wrapper needs no loader of its own.
     * `which` (borrowed) is a plugin name, looked up on the host's search path, or a path to a
     * library (it contains a '/') whose one plugin of `kind` is taken. `settings` (borrowed) is
     * "key=value,key=value" (NULL or "" for the defaults), checked against the plugin's
     * declarations like a manifest section. On success writes to *out_vtable the plugin's vtable
     * in this host's layout of its kind (every slot callable: slots an older plugin lacks hold
     * their documented defaults) and to *out_instance its instance; both stay valid until
     * close_plugin(), and the instance's log lines and reports reach the run's log under its own
     * kind/name. On failure returns PANGEA_ERR_CONFIG (no such plugin, a bad setting) or the
     * status of the plugin's create(), writes neither out value, and writes the reason into
     * `error` (NUL-terminated, cut to error_capacity bytes; `error` may be NULL). */
    pangea_status (*open_plugin)(void* context, pangea_plugin_kind kind, const char* which,
                                 const char* settings, const void** out_vtable, void** out_instance,
                                 char* error, size_t error_capacity);

    /* Destroys an instance made by open_plugin() on this host. Accepts NULL. Instances still
     * open when the caller's own instance is destroyed are destroyed right after it. */
    void (*close_plugin)(void* context, void* instance);
} pangea_host;

/* The frozen sizes of ABI 1.0's structs (pangea/v1_0/ has their layouts). A reader accepts any
 * struct_size from these up, reads only what lies inside the size it was given, and takes the
 * documented default for the rest; a writer writes only what fits the reader's size. */
#define PANGEA_HOST_SIZE_1_0 (offsetof(pangea_host, report_error) + sizeof(void (*)(void)))

/* ---------------------------------------------------------------- vtables ---------------- */

/* The first member of every kind's vtable: its size and the instance lifecycle. */
typedef struct pangea_vtable_header {
    /* sizeof the whole kind-specific vtable as the plugin was built. The host calls a slot only
     * when the slot lies inside this size; required slots must always be inside it. */
    uint32_t struct_size;

    /* Makes an instance configured from host's settings. On success writes an opaque handle to
     * *out_instance (owned by the caller, released with destroy()). On failure returns the
     * status, leaves *out_instance untouched and calls host->report_error() with the reason.
     * `host` stays valid until destroy(). */
    pangea_status (*create)(const pangea_host* host, void** out_instance);

    /* Releases the instance and everything it owns. Accepts NULL. Never fails. */
    void (*destroy)(void* instance);

    /* The text of the calling thread's most recent failure on this instance, or "" if none.
     * Never NULL. The string is owned by the instance and valid until the calling thread's next
     * call on it. (For kinds used by one thread at a time this is simply the last failure.) */
    const char* (*last_error)(void* instance);
} pangea_vtable_header;

/* ---------------------------------------------------------------- descriptors ------------ */

/* One plugin. Static data owned by the library, valid while it is loaded. */
typedef struct pangea_plugin_info {
    uint32_t struct_size;        /* sizeof(pangea_plugin_info) as the plugin was built */
    uint32_t abi_version;        /* PANGEA_ABI_VERSION the plugin was built against */
    pangea_plugin_kind kind;
    const char* name;            /* [a-z0-9_-]+, unique per kind among loaded plugins */
    const char* version;         /* the plugin's own version, e.g. "1.0.0" */
    const char* description;     /* one line */
    const pangea_setting* settings; /* setting_count entries (NULL when 0) */
    uint32_t setting_count;
    uint32_t setting_size;       /* sizeof(pangea_setting) as built: the array's stride */
    const void* vtable;          /* the kind's vtable; starts with a pangea_vtable_header */
} pangea_plugin_info;

#define PANGEA_PLUGIN_INFO_SIZE_1_0 (offsetof(pangea_plugin_info, vtable) + sizeof(const void*))

/* Everything a library provides. Static data owned by the library. */
typedef struct pangea_library {
    uint32_t struct_size;  /* sizeof(pangea_library) as built */
    /* The ABI version the library speaks with this host: its answer to the host's offer (see the
     * entry point). At most the version it was built against. */
    uint32_t abi_version;
    uint32_t plugin_count;
    const pangea_plugin_info* const* plugins;
} pangea_library;

#define PANGEA_LIBRARY_SIZE_1_0 (offsetof(pangea_library, plugins) + sizeof(void*))

/* ---------------------------------------------------------------- entry point ------------ */

/* The one symbol a plugin library exports. Its name carries the ABI major, so a host finds only
 * libraries it can speak to, and can name the major of those it cannot. */
#define PANGEA_PLUGIN_ENTRY_SYMBOL "pangea_plugin_entry_v1"

/* The handshake, a negotiation. The host offers the newest PANGEA_ABI_VERSION it speaks. The
 * library answers PANGEA_ERR_VERSION if it cannot work with that host (a different major, or an
 * older minor than it needs), else writes its static descriptor to *out_library, whose
 * abi_version is the version it will speak: the older of the offer and what it was built
 * against. It returns PANGEA_OK. The host then calls only what that version has, and the
 * library returns only what that version knows (statuses, flags). Each plugin_info and vtable
 * still carries the size it was built with; the host adapts older layouts. May be called more
 * than once, with the same answer for the same offer; must not allocate anything the host would
 * have to free. */
typedef pangea_status (*pangea_plugin_entry_fn)(uint32_t host_abi_version,
                                                const pangea_library** out_library);

#if defined(_WIN32)
#define PANGEA_EXPORT __declspec(dllexport)
#else
#define PANGEA_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_PLUGIN_H */
