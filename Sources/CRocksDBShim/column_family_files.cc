// Export and import of a column family's table files, which the 7.8 C API
// lacks. See include/CRocksDBShim.h for the contracts.
#include "CRocksDBShim.h"
#include "c_api_mirror.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <rocksdb/db.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/table_properties.h>
#include <rocksdb/utilities/checkpoint.h>

using sharddb_shim::save_error;

namespace {
// LiveFileMetaData names a file "/000123.sst" relative to its db_path.
std::string bare_name(const std::string &name) {
  return !name.empty() && name[0] == '/' ? name.substr(1) : name;
}
}  // namespace

extern "C" void sharddb_export_column_family(rocksdb_t *db, rocksdb_column_family_handle_t *family,
                                             const char *directory,
                                             void (*visit)(void *, const sharddb_table_file_t *),
                                             void *context, char **errptr) {
  rocksdb::Checkpoint *raw = nullptr;
  if (save_error(errptr, rocksdb::Checkpoint::Create(db->rep, &raw))) return;
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  rocksdb::ExportImportFilesMetaData *raw_metadata = nullptr;
  if (save_error(errptr, checkpoint->ExportColumnFamily(family->rep, directory, &raw_metadata))) return;
  std::unique_ptr<rocksdb::ExportImportFilesMetaData> metadata(raw_metadata);
  for (const auto &f : metadata->files) {
    std::string name = bare_name(f.name);
    // The export's metadata leaves the entry counts at 0 in 7.8: read the file's properties.
    uint64_t entries = f.num_entries, deletions = f.num_deletions, range_deletions = UINT64_MAX;
    rocksdb::SstFileReader reader{rocksdb::Options()};
    if (reader.Open(f.db_path + "/" + name).ok()) {
      if (auto properties = reader.GetTableProperties()) {
        entries = properties->num_entries;
        deletions = properties->num_deletions;
        range_deletions = properties->num_range_deletions;
      }
    }
    sharddb_table_file_t file{f.db_path.c_str(), name.c_str(), f.level, f.smallest_seqno, f.largest_seqno,
                              f.size, entries, deletions, range_deletions};
    visit(context, &file);
  }
}

extern "C" rocksdb_column_family_handle_t *sharddb_create_column_family_with_import(
    rocksdb_t *db, const rocksdb_options_t *options, const char *name,
    const sharddb_table_file_t *files, size_t count, unsigned char move_files, char **errptr) {
  rocksdb::ExportImportFilesMetaData metadata;
  metadata.db_comparator_name = options->rep.comparator->Name();
  for (size_t i = 0; i < count; ++i) {
    rocksdb::LiveFileMetaData f;
    f.db_path = files[i].directory;
    f.name = files[i].name;
    f.level = files[i].level;
    f.smallest_seqno = files[i].smallest_seqno;
    f.largest_seqno = files[i].largest_seqno;
    f.size = files[i].size;
    metadata.files.push_back(f);
  }
  rocksdb::ImportColumnFamilyOptions import_options;
  import_options.move_files = move_files != 0;
  rocksdb::ColumnFamilyHandle *handle = nullptr;
  rocksdb::Status s = db->rep->CreateColumnFamilyWithImport(rocksdb::ColumnFamilyOptions(options->rep), name,
                                                            import_options, metadata, &handle);
  if (save_error(errptr, s)) {
    delete handle;
    return nullptr;
  }
  return new rocksdb_column_family_handle_t{handle};
}

extern "C" void sharddb_create_column_families(rocksdb_t *db, size_t count, const char *const *names,
                                               const rocksdb_options_t *const *options,
                                               rocksdb_column_family_handle_t **handles, char **errptr) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    descriptors.emplace_back(names[i], rocksdb::ColumnFamilyOptions(options[i]->rep));
    handles[i] = nullptr;
  }
  std::vector<rocksdb::ColumnFamilyHandle *> created;
  rocksdb::Status s = db->rep->CreateColumnFamilies(descriptors, &created);
  for (size_t i = 0; i < created.size() && i < count; ++i) {
    if (created[i] != nullptr) handles[i] = new rocksdb_column_family_handle_t{created[i]};
  }
  save_error(errptr, s);
}
