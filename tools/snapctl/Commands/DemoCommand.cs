using System.CommandLine;
using Journal.Tools;
using SnapCtl.Demo;

namespace SnapCtl.Commands;

/// <summary><c>snapctl demo [&lt;folder&gt;] [--json] [--seed &lt;n&gt;] [--crash-only]</c>: the main job end to end.</summary>
internal static class DemoCommand
{
    public static Command Create(ToolConsole console)
    {
        var folder = new Argument<string?>("folder")
        {
            Description = "Where to build the demo store: a new or empty folder (default: a scratch folder, removed afterwards).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var json = CommonOptions.Json();
        var seed = new Option<int?>("--seed") { Description = "Seed of the workload and of the crash (default: random; printed).", HelpName = "n" };
        var crashOnly = new Option<bool>("--crash-only")
        {
            Description = "Stop after the crash: leave the store unclean in the folder (kept) for jreplay and snapctl to recover.",
        };
        var command = new Command("demo",
            "Create a store, snapshot while writing, crash without a clean close, reopen (replaying the journal) and verify every sector.")
        {
            folder, json, seed, crashOnly,
        };
        command.SetAction(r => DemoRunner.RunAsync(console, r.GetValue(folder), r.GetValue(json), new DemoSettings
        {
            Seed = r.GetValue(seed) ?? Random.Shared.Next(1, 1_000_000),
            CrashOnly = r.GetValue(crashOnly),
        }));
        return command;
    }
}
