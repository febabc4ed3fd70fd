using Xunit.Abstractions;

namespace Journal.Tests.Tools;

/// <summary>
/// Damages one byte of a checkpoint in a crashed store's journal and seals the record again with a correct CRC (what a
/// writer bug would leave: the log's own checks pass), then runs <c>check</c>, <c>replay</c> and <c>print</c> on copies
/// of it: check and replay always give the same verdict (check 1 and replay 0, or both 2 with the same line), and print
/// refuses whatever is wrong in the log with that same line.
/// </summary>
/// <remarks>Knob: <c>JOURNAL_JREPLAY_FUZZ</c> (default 40 damaged stores); seeded.</remarks>
public class JReplayFuzzTests(ITestOutputHelper output)
{
    private static int Iterations =>
        int.TryParse(Environment.GetEnvironmentVariable("JOURNAL_JREPLAY_FUZZ"), out int n) && n > 0 ? n : 40;

    [Fact]
    public async Task Check_and_replay_give_the_same_verdict_on_every_damaged_checkpoint()
    {
        using var dir = new TempFolder();
        var baseStore = dir["base"];
        await CrashedStore.CreateAsync(baseStore);
        var checkpoints = CrashedStore.Checkpoints(Path.Combine(baseStore, "journal.log"));
        var rng = new Random(20240611);
        int accepted = 0, refusedInLog = 0, refusedElsewhere = 0;
        for (int it = 0; it < Iterations; it++)
        {
            var c = checkpoints[rng.Next(checkpoints.Count)];
            int offset = rng.Next(CrashedStore.Length(c));
            byte value = (byte)rng.Next(256);
            string a = dir[$"a{it}"], b = dir[$"b{it}"];
            CrashedStore.CopyFolder(baseStore, a);
            CrashedStore.CopyFolder(baseStore, b);
            string what = $"iteration {it}: checkpoint {c.Sequence} byte {offset} := 0x{value:x2}";
            foreach (var store in new[] { a, b })
                CrashedStore.Forge(Path.Combine(store, "journal.log"), c, offset, old => old == value ? (byte)~value : value);

            var check = ToolRunner.JReplay("check", a);
            var print = ToolRunner.JReplay("print", a);
            var replay = ToolRunner.JReplay("replay", b);
            Assert.True(check.ExitCode is 1 or 2, $"{what}: check {check}");
            Assert.True(check.ExitCode == 1 ? replay.ExitCode == 0 : replay.ExitCode == 2, $"{what}: check {check}\nreplay {replay}");
            if (check.ExitCode == 1)
            {
                Assert.True(print.ExitCode == 0, $"{what}: print {print}");
                accepted++;
            }
            else
            {
                string line = Assert.Single(check.ErrorLines);
                // The same line, but for the folder (the two copies live in two folders).
                Assert.Equal(line, Assert.Single(replay.ErrorLines).Replace(Path.GetFullPath(b), Path.GetFullPath(a)).Replace(b, a));
                if (line.StartsWith($"jreplay: {Path.GetFullPath(Path.Combine(a, "journal.log"))}: ", StringComparison.Ordinal))
                {
                    // Damage in the log: print refuses it too, with the same line.
                    Assert.True(print.ExitCode == 2, $"{what}: check {line}; print {print}");
                    Assert.Equal(check.ErrorLines, print.ErrorLines);
                    refusedInLog++;
                }
                else
                {
                    // Damage only the store's files reveal after the replay (a COW entry the log could not judge):
                    // print, which reads the log alone, shows it.
                    output.WriteLine($"{what}: refused by the store's files: {line}");
                    refusedElsewhere++;
                }
            }
            Directory.Delete(a, recursive: true);
            Directory.Delete(b, recursive: true);
        }
        output.WriteLine($"{Iterations} damaged stores: {accepted} accepted, {refusedInLog} refused in the log, {refusedElsewhere} refused in the store's files");
        Assert.True(refusedInLog > 0, "no damage was ever refused");
        Assert.True(accepted + refusedElsewhere > 0 || Iterations < 10, "every damage was refused in the log: the fuzz never reached the store");
    }
}
