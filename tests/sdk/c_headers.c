/* Every public header must compile as C99 with -pedantic -Werror (tests/CMakeLists.txt). */
#include "pangea/plugin.h"
#include "pangea/compress.h"
#include "pangea/optim.h"
#include "pangea/storage.h"
#include "pangea/transport.h"

int main(void) {
    pangea_compress_vtable compress;
    compress.header.struct_size = (uint32_t)sizeof compress;
    return compress.header.struct_size == 0 || PANGEA_ABI_VERSION_MAJOR(PANGEA_ABI_VERSION) != 1;
}
