using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>
/// Issue 9 item 2: one opener at a time, even when the user deletes <c>store.lock</c> while a command runs. Two real
/// <c>snapctl</c> processes: the first is stopped (SIGSTOP) in the middle of a long write, so it holds the store open
/// with its in-memory state; <c>store.lock</c> is removed; a second writer must be refused (if it gets in, the first
/// resumes while it writes, the two side by side); once the first finishes, every chunk of the snapshot and of the
/// origin must read what was written.
/// </summary>
public sealed class StoreLockTests
{
    private const uint Tag = 0x10C4;

    [Fact]
    public async Task Deleting_store_lock_during_a_write_does_not_let_a_second_writer_in()
    {
        // The first writer is stopped once it has written some of its data; on a machine fast enough to finish
        // before the watcher sees that, start over with a larger store (bounded).
        for (int megabytes = 16; ; megabytes *= 2)
        {
            if (await RunScenarioAsync(megabytes)) return;
            Assert.True(megabytes < 128, "the first writer always finished before it could be stopped mid-write");
        }
    }

    private static async Task<bool> RunScenarioAsync(int megabytes)
    {
        using var dir = new TempFolder();
        string store = dir["store"];
        int sectors = megabytes << 11;
        int half = sectors / 2;
        await Tool.SnapCtlOk("init", store, "--origin-size", $"{megabytes}M", "--chunk-size", "4K");
        await Tool.SnapCtlOk(Tool.WriteArgs(store, null, 0, Tool.StampFile(dir.Path, Tag, 1, 0, sectors)));
        await Tool.SnapCtlOk("snapshot", "create", store, "s1");

        string firstInput = Tool.StampFile(dir.Path, Tag, 2, 0, half);
        string secondInput = Tool.StampFile(dir.Path, Tag, 3, half, half);
        string journal = Path.Combine(store, "journal.log");
        using var first = ToolProcess.Start("snapctl", Tool.WriteArgs(store, null, 0, firstInput));
        // Mid-write: it holds the store open and has copied and committed chunks.
        bool caught = await ProcWatch.WaitUntilAsync(first,
            () => ProcWatch.HasOpen(first.Pid, journal) && ProcWatch.BytesWritten(first.Pid) > ProcWatch.MidWorkBytes,
            Tool.Watchdog, "store open and 8 MiB written");
        if (caught) first.Signal(ProcWatch.SigStop);
        if (!caught || first.HasExited)
        {
            await first.WaitForExitAsync(Tool.Watchdog);
            return false;
        }

        ToolResult second;
        try
        {
            File.Delete(Path.Combine(store, "store.lock"));
            // The second writer starts while the first is stopped; once it is writing too (if it got in), both run
            // side by side, as two users' commands would.
            using var p2 = ToolProcess.Start("snapctl", Tool.WriteArgs(store, null, half, secondInput));
            await ProcWatch.WaitUntilAsync(p2, () => ProcWatch.BytesWritten(p2.Pid) > ProcWatch.MidWorkBytes, Tool.Watchdog, "8 MiB written");
            first.Signal(ProcWatch.SigCont);
            await p2.WaitForExitAsync(Tool.Watchdog);
            second = p2.Result();
        }
        finally
        {
            if (!first.HasExited) first.Signal(ProcWatch.SigCont);
        }
        await first.WaitForExitAsync(Tool.Watchdog);
        Assert.True(first.ExitCode == 0, $"the first writer: exit {first.ExitCode}\n{first.Stdout}\n{first.Stderr}");

        // Read everything before judging the second writer, so a failure also says what its entry cost.
        var image = await StoreImage.ReadAsync(store);
        var problems = new List<string>();
        bool secondWrote = second.ExitCode == 0;
        Compare(image.Volumes["s1"], "s1", sectors, _ => 1, problems);
        Compare(image.Volumes["origin"], "origin", sectors, s => s < half ? 2 : secondWrote ? 3 : 1, problems);
        Assert.True(second.ExitCode == 2 && second.Stderr.Contains("store is in use", StringComparison.Ordinal),
            $"a second writer got in while the first held the store (store.lock deleted): {second}\n"
            + $"afterwards (the origin judged with the second write as landed): {(problems.Count == 0 ? "every chunk right" : string.Join("\n", problems))}");
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.True(image.Snapshot("s1")!.IsValid, image.Snapshot("s1")!.ToString());
        var check = await Tool.JReplay("check", store);
        Assert.True(check.ExitCode == 0, $"jreplay check: {check}");
        return true;
    }

    /// <summary>Adds a line per wrong chunk (the first few) and a total to <paramref name="problems"/>.</summary>
    private static void Compare(byte[] data, string volume, int sectors, Func<long, long> expected, List<string> problems)
    {
        const int chunkSectors = 8;
        int wrongChunks = 0;
        for (int c = 0; c < sectors / chunkSectors; c++)
        {
            for (int i = 0; i < chunkSectors; i++)
            {
                long s = (long)c * chunkSectors + i;
                var sector = data.AsSpan((int)(s * SectorStamp.SectorSize), SectorStamp.SectorSize);
                if (SectorStamp.Identify(sector, Tag, s) == expected(s)) continue;
                if (++wrongChunks <= 5)
                    problems.Add($"{volume} chunk {c} sector {s}: expected write {expected(s)}, found {SectorStamp.Describe(sector, Tag, s)}");
                break;
            }
        }
        if (wrongChunks > 0) problems.Add($"{volume}: {wrongChunks} of {sectors / chunkSectors} chunks wrong");
    }
}
