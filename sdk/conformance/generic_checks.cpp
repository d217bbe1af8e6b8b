// Checks every plugin library and every plugin must pass, whatever its kind.
#include <string>
#include <vector>

#include "conformance.hpp"
#include "elf_symbols.hpp"
#include "pangea/plugin.h"
#include "plugin_host/shared_library.hpp"

namespace pangea::conformance {
namespace {

// A host whose every config lookup answers `answer`: shows how create() copes with settings
// it cannot read (it must fail with a reason, never crash).
struct RefusingHost {
    pangea_host table{};
    pangea_status answer;
    std::string reported;
    int reports = 0;

    explicit RefusingHost(pangea_status lookup_answer) : answer(lookup_answer) {
        table.struct_size = sizeof(pangea_host);
        table.abi_version = PANGEA_ABI_VERSION;
        table.context = this;
        table.log = [](void*, pangea_log_level, const char*) {};
        table.config_string = [](void* c, const char*, const char**) { return self(c)->answer; };
        table.config_int = [](void* c, const char*, int64_t*) { return self(c)->answer; };
        table.config_float = [](void* c, const char*, double*) { return self(c)->answer; };
        table.config_bool = [](void* c, const char*, int*) { return self(c)->answer; };
        table.report_error = [](void* c, pangea_status, const char* message) {
            self(c)->reported = message ? message : "";
            ++self(c)->reports;
        };
    }
    static RefusingHost* self(void* context) { return static_cast<RefusingHost*>(context); }
};

std::vector<SettingValue> boundary_values(const pangea_setting& setting) {
    std::vector<SettingValue> out;
    const bool ranged = setting.min_value <= setting.max_value;
    switch (setting.type) {
        case PANGEA_SETTING_INT:
            if (ranged) out = {static_cast<int64_t>(setting.min_value), static_cast<int64_t>(setting.max_value)};
            break;
        case PANGEA_SETTING_FLOAT:
            if (ranged) out = {setting.min_value, setting.max_value};
            break;
        case PANGEA_SETTING_BOOL: out = {true, false}; break;
        case PANGEA_SETTING_STRING:
            if (setting.choices != nullptr) {
                std::string_view rest = setting.choices;
                while (true) {
                    const size_t bar = rest.find('|');
                    out.emplace_back(std::string(rest.substr(0, bar)));
                    if (bar == std::string_view::npos) break;
                    rest.remove_prefix(bar + 1);
                }
            }
            break;
    }
    return out;
}

}  // namespace

void check_library(Report& report, const std::filesystem::path& library) {
    const std::string prefix = library.filename().string() + ": ";
    report.run(prefix + "exports only entry points (" PANGEA_PLUGIN_ENTRY_SYMBOL ", ...)", [&] {
        std::vector<std::string> extra;
        bool has_entry = false;
        for (const auto& symbol : exported_symbols(library)) {
            if (symbol == PANGEA_PLUGIN_ENTRY_SYMBOL) has_entry = true;
            else if (symbol.rfind("pangea_plugin_entry_v", 0) != 0) extra.push_back(symbol);
        }
        expect(has_entry, "the entry point is not exported");
        std::string list;
        for (size_t i = 0; i < extra.size() && i < 5; ++i) list += " " + extra[i];
        expect(extra.empty(), std::to_string(extra.size()) + " other symbols exported (" + list +
                                  " ...): link with the SDK's plugin.map (pangea_add_plugin does)");
    });
    report.run(prefix + "handshake", [&] {
        const SharedLibrary lib(library);
        const auto entry = lib.function<pangea_plugin_entry_fn>(PANGEA_PLUGIN_ENTRY_SYMBOL);
        expect(entry != nullptr, "no entry point");
        const pangea_library* first = nullptr;
        const pangea_library* second = nullptr;
        expect(entry(PANGEA_ABI_VERSION, &first) == PANGEA_OK && first != nullptr,
               "refuses this host's ABI");
        expect(entry(PANGEA_ABI_VERSION, &second) == PANGEA_OK && second == first,
               "a second call returns a different descriptor");
        const pangea_library* refused = nullptr;
        const uint32_t newer = static_cast<uint32_t>((PANGEA_ABI_MAJOR + 1) << 16);
        expect(entry(newer, &refused) == PANGEA_ERR_VERSION,
               "accepts a host of ABI major " + std::to_string(PANGEA_ABI_MAJOR + 1) +
                   " (must return PANGEA_ERR_VERSION)");
        expect(entry(0, &refused) == PANGEA_ERR_VERSION,
               "accepts a host of ABI major 0 (must return PANGEA_ERR_VERSION)");
        expect(entry(PANGEA_ABI_VERSION, nullptr) != PANGEA_OK,
               "returns PANGEA_OK with a NULL out_library");
        // The negotiation: the answer never names a version newer than the offer.
        for (uint32_t minor = 0; minor <= PANGEA_ABI_MINOR; ++minor) {
            const uint32_t offer = (PANGEA_ABI_MAJOR << 16) | minor;
            const pangea_library* answer = nullptr;
            const pangea_status status = entry(offer, &answer);
            if (status == PANGEA_ERR_VERSION) continue;  // it needs a newer host: allowed
            expect(status == PANGEA_OK && answer != nullptr,
                   "offered ABI 1." + std::to_string(minor) + ": neither PANGEA_OK with a descriptor nor PANGEA_ERR_VERSION");
            expect(answer->abi_version <= offer && PANGEA_ABI_VERSION_MAJOR(answer->abi_version) == PANGEA_ABI_MAJOR,
                   "offered ABI 1." + std::to_string(minor) + ", it answered " +
                       std::to_string(PANGEA_ABI_VERSION_MAJOR(answer->abi_version)) + "." +
                       std::to_string(PANGEA_ABI_VERSION_MINOR(answer->abi_version)) +
                       " (pangea_library.abi_version must be at most the offer)");
        }
    });
}

void check_generic(Report& report, const Subject& subject) {
    const PluginDescriptor& plugin = *subject.plugin;
    const pangea_vtable_header& header = header_of(*plugin.vtable);

    report.run(subject.check_name("descriptor and " + std::to_string(plugin.settings.size()) +
                                  " declared settings are valid"),
               [] { /* the host validated them while loading; a bad one never gets here */ });

    report.run(subject.check_name("create and destroy with default settings"), [&] {
        for (int round = 0; round < 3; ++round) {
            PluginInstance instance = subject.make();
            expect(instance.handle() != nullptr, "no instance");
        }
    });

    report.run(subject.check_name("create with every setting at its bounds"), [&] {
        for (const auto& setting : plugin.settings) {
            for (const auto& value : boundary_values(setting)) {
                SettingMap settings = subject.settings;
                settings[setting.name] = {value, "conformance"};
                try {
                    PluginInstance instance(plugin, settings);
                } catch (const PluginError& e) {
                    // Refusing a combination is allowed, but only with a reason.
                    expect(std::string(e.what()).find("reported no reason") == std::string::npos,
                           std::string("create() with ") + setting.name + " = " +
                               format_setting_value(value) + " failed without a reason");
                }
            }
        }
    });

    report.run(subject.check_name("create fails cleanly when settings cannot be read"), [&] {
        for (pangea_status answer : {PANGEA_ERR_NOT_FOUND, PANGEA_ERR_CONFIG}) {
            RefusingHost host(answer);
            void* instance = nullptr;
            const pangea_status status = header.create(&host.table, &instance);
            if (status == PANGEA_OK) {
                // A plugin that reads no settings may succeed.
                expect(instance != nullptr, "create() returned PANGEA_OK but no instance");
                header.destroy(instance);
                continue;
            }
            expect(instance == nullptr, "create() failed but wrote an instance");
            expect(host.reports > 0 && !host.reported.empty(),
                   std::string("create() failed with ") + status_name(status) +
                       " without calling report_error() with a reason");
        }
    });

    report.run(subject.check_name("last_error() of a new instance is \"\"; destroy(NULL) is a no-op"), [&] {
        PluginInstance instance = subject.make();
        const char* text = header.last_error(instance.handle());
        expect(text != nullptr, "last_error() returned NULL");
        expect(text[0] == '\0', std::string("last_error() of a fresh instance is \"") + text + "\"");
        header.destroy(nullptr);
    });
}

}  // namespace pangea::conformance
