using System.CommandLine;
using JournalBench;
using JournalBench.Benchmarks;

// journal-bench: one subcommand per benchmark class in Benchmarks/. Each prints a table, or one JSON object with --json.
var root = new RootCommand("Benchmarks of the journal and the snapshot store. Each subcommand prints a table, or one JSON object with --json.");
root.Subcommands.Add(LogBenchmark.CreateCommand());
root.Subcommands.Add(CowBenchmark.CreateCommand());
root.Subcommands.Add(StormBenchmark.CreateCommand());
root.Subcommands.Add(CommitBenchmark.CreateCommand());
root.Subcommands.Add(RelogBenchmark.CreateCommand());
root.Subcommands.Add(InsertBenchmark.CreateCommand());
root.Subcommands.Add(CrcBenchmark.CreateCommand());
root.Subcommands.Add(NbdBenchmark.CreateCommand());
root.Subcommands.Add(DiffBenchmark.CreateCommand());
return await BenchCommon.InvokeAsync(root, args);
