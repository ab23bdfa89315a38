// BackupEngine functions the 7.8 C API lacks: create with app metadata and
// the new id, delete one backup, garbage-collect, verify with checksums, read a
// backup's app metadata and file list, list corrupt backups (read-only).
// See include/CRocksDBShim.h for the contracts.
#include "CRocksDBShim.h"
#include "c_api_mirror.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <memory>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/utilities/backup_engine.h>

using sharddb_shim::save_error;

extern "C" uint32_t sharddb_backup_engine_create_backup(
    rocksdb_backup_engine_t *be, rocksdb_t *db, unsigned char flush_before_backup,
    const char *app_metadata, size_t app_metadata_len,
    void (*progress)(void *context), void *context, char **errptr) {
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = flush_before_backup != 0;
  if (progress != nullptr) {
    options.progress_callback = [progress, context]() { progress(context); };
  }
  rocksdb::BackupID id = 0;
  std::string metadata(app_metadata == nullptr ? "" : std::string(app_metadata, app_metadata_len));
  save_error(errptr, be->rep->CreateNewBackupWithMetadata(options, db->rep, metadata, &id));
  return id;
}

extern "C" void sharddb_backup_engine_delete_backup(rocksdb_backup_engine_t *be, uint32_t backup_id, char **errptr) {
  save_error(errptr, be->rep->DeleteBackup(backup_id));
}

extern "C" void sharddb_backup_engine_garbage_collect(rocksdb_backup_engine_t *be, char **errptr) {
  save_error(errptr, be->rep->GarbageCollect());
}

extern "C" void sharddb_backup_engine_verify_backup(rocksdb_backup_engine_t *be, uint32_t backup_id,
                                                    unsigned char verify_with_checksum, char **errptr) {
  save_error(errptr, be->rep->VerifyBackup(backup_id, verify_with_checksum != 0));
}

extern "C" char *sharddb_backup_engine_app_metadata(rocksdb_backup_engine_t *be, uint32_t backup_id,
                                                    size_t *length, char **errptr) {
  rocksdb::BackupInfo info;
  *length = 0;
  if (save_error(errptr, be->rep->GetBackupInfo(backup_id, &info, false))) return nullptr;
  char *copy = static_cast<char *>(malloc(info.app_metadata.size() + 1));
  std::memcpy(copy, info.app_metadata.data(), info.app_metadata.size());
  copy[info.app_metadata.size()] = 0;
  *length = info.app_metadata.size();
  return copy;
}

extern "C" void sharddb_backup_engine_backup_files(
    rocksdb_backup_engine_t *be, uint32_t backup_id,
    void (*visit)(void *context, const char *directory, const char *relative_name, uint64_t size),
    void *context, char **errptr) {
  rocksdb::BackupInfo info;
  if (save_error(errptr, be->rep->GetBackupInfo(backup_id, &info, true))) return;
  for (const auto &file : info.file_details) {
    visit(context, file.directory.c_str(), file.relative_filename.c_str(), file.size);
  }
}

extern "C" void sharddb_backup_engine_corrupt_backups(const char *backup_dir,
                                                     void (*visit)(void *context, uint32_t backup_id, const char *reason),
                                                     void *context, char **errptr) {
  rocksdb::Env *env = rocksdb::Env::Default();
  // No meta directory: nothing was ever backed up here (a read-only engine refuses to open it).
  if (!env->FileExists(std::string(backup_dir) + "/meta").ok()) return;
  rocksdb::BackupEngineReadOnly *opened = nullptr;
  if (save_error(errptr, rocksdb::BackupEngineReadOnly::Open(rocksdb::BackupEngineOptions(backup_dir), env, &opened))) return;
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(opened);
  std::vector<rocksdb::BackupID> corrupt;
  engine->GetCorruptedBackups(&corrupt);
  std::sort(corrupt.begin(), corrupt.end());
  for (rocksdb::BackupID id : corrupt) {
    // For a backup the engine could not load, VerifyBackup returns the status of that load.
    visit(context, id, engine->VerifyBackup(id, false).ToString().c_str());
  }
}
