import ArgumentParser

/// `shardctl`: inspect and operate ShardDB instances.
@main
struct ShardCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardctl",
        abstract: "Create, inspect and operate ShardDB instances.",
        discussion: """
            A ShardDB instance is a directory holding one RocksDB database whose state is split \
            into shards (one column family per shard). Commands that open an instance need it not \
            to be open in another process.

            Exit status: 0 on success; 1 when 'get' finds no value; 2 on any error (one line on stderr); \
            141 when the reader of its output went away (`shardctl scan DIR | head`).
            """,
        subcommands: [
            Init.self, Info.self, Put.self, Get.self, Delete.self, DeleteRange.self, Scan.self,
            Import.self, Export.self, Compact.self, Migrate.self, Rescale.self, Demo.self, Checkpoint.self,
            Bench.self, Serve.self,
            Stress.self, Verify.self, SalvageWAL.self,
        ]
    )
}
