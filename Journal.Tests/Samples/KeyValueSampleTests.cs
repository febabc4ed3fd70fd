using System.Globalization;
using Journal.Testing;
using Journal.Tests.Tools;
using Samples.KeyValue;

namespace Journal.Tests.Samples;

/// <summary>
/// The key-value store sample (docs/samples/KeyValueStore) does what its documentation says: puts, deletes and a clean
/// reopen; every acknowledged put survives every crash state of its crash check; and its <c>kvstore</c> command,
/// killed with SIGKILL while writers put, reopens with every acknowledged put.
/// </summary>
public sealed class KeyValueSampleTests
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task PutsAndDeletes_SurviveACleanReopen_AndTheHomeFileGrowsForNewKeys()
    {
        using var folder = new TempFolder();
        var expected = new Dictionary<string, string>(StringComparer.Ordinal);
        await using (var store = await KeyValueStore.OpenFolderAsync(folder.Path))
        {
            for (int i = 0; i < 100; i++)
            {
                string key = $"key-{i}", value = $"value {i} " + new string('x', i * 7);
                await store.PutAsync(key, value);
                expected[key] = value;
            }
            for (int i = 0; i < 100; i += 3)
            {
                Assert.True(await store.DeleteAsync($"key-{i}"));
                expected.Remove($"key-{i}");
            }
            Assert.False(await store.DeleteAsync("key-0"));                // deleted already
            await store.PutAsync("key-3", "back again");                   // a deleted key comes back in its slot
            expected["key-3"] = "back again";
            await Assert.ThrowsAsync<ArgumentException>(async () => await store.PutAsync("", "no key"));
            await Assert.ThrowsAsync<ArgumentException>(async () => await store.PutAsync("big", new string('y', 997)));
            Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), store.Entries());
        }
        Assert.True(new FileInfo(folder[KeyValueStore.HomeFile]).Length >= 100 * KeySlot.Bytes); // grew from 16 slots

        await using (var store = await KeyValueStore.OpenFolderAsync(folder.Path))
        {
            Assert.Equal(0, store.Journal.RecoveredCheckpoints);              // closed cleanly: nothing to replay
            Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), store.Entries());
            Assert.Equal(expected.Count, store.Count);
            Assert.False(store.TryGet("key-0", out _));
        }
    }

    [Fact]
    public async Task CrashCheck_EveryAcknowledgedPut_SurvivesEveryCrashState()
    {
        var result = await CrashCheck.RunAsync(seed: 5, puts: 400, maxStates: 60).WaitAsync(Watchdog);
        Assert.True(result.Failures.Count == 0, result.ToString());
        Assert.Equal(400, result.Puts);
        Assert.True(result.States >= 60, result.ToString());
        Assert.True(result.Torn > 0 && result.Replayed > 0, result.ToString()); // the states include torn writes and replays
    }

    [Fact]
    public async Task KilledWithSigkillWhileWritersPut_ReopensWithEveryAcknowledgedPut()
    {
        using var folder = new TempFolder();
        string store = folder["store"];
        using (var fill = ToolProcess.Start("kvstore", ["fill", store, "--writers", "4", "--keys", "32", "--log-size", "262144"]))
        {
            // A 256 KiB log wraps many times in 1500 puts: write-back and tail moves run all along.
            await fill.WaitForLineAsync(l => l.StartsWith("acked 1500 ", StringComparison.Ordinal), Watchdog);
            fill.Signal(ToolProcess.SigKill);
            await fill.WaitForExitAsync(Watchdog);
            Assert.NotEqual(0, fill.ExitCode);

            // The newest acknowledged value of every key; a key's puts come from one writer, in order.
            var acked = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var line in fill.Stdout.Split('\n'))
                if (line.Split(' ') is ["acked", _, var key, var value])
                    acked[key] = Math.Max(acked.GetValueOrDefault(key), long.Parse(value[1..], CultureInfo.InvariantCulture));
            Assert.True(acked.Count == 32, $"{acked.Count} keys acknowledged");

            var list = await ToolProcess.RunAsync("kvstore", ["list", store], Watchdog);
            Assert.True(list.ExitCode == 0, list.ToString());
            Assert.Contains("recovery replayed", list.Stderr);
            var found = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split('=')).ToDictionary(p => p[0], p => long.Parse(p[1][1..], CultureInfo.InvariantCulture));
            Assert.Equal(acked.Keys.Order(), found.Keys.Order());
            foreach (var (key, n) in acked)
                Assert.True(found[key] >= n, $"{key}: acknowledged v{n}, found v{found[key]}\n{list}");

            // The reopen closed the store cleanly: the next one replays nothing and sees the same values.
            var again = await ToolProcess.RunAsync("kvstore", ["list", store], Watchdog);
            Assert.Contains("recovery replayed 0 checkpoints", again.Stderr);
            Assert.Equal(list.Stdout, again.Stdout);
        }
    }

    [Fact]
    public async Task Kvstore_ReportsAMissingKey_AndUsageErrors_WithItsExitCodes()
    {
        using var folder = new TempFolder();
        string store = folder["store"];
        Assert.Equal(0, (await ToolProcess.RunAsync("kvstore", ["put", store, "colour", "blue"], Watchdog)).ExitCode);
        var get = await ToolProcess.RunAsync("kvstore", ["get", store, "colour"], Watchdog);
        Assert.Equal((0, "blue\n"), (get.ExitCode, get.Stdout));
        var missing = await ToolProcess.RunAsync("kvstore", ["get", store, "size"], Watchdog);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("size: no such key", missing.Stderr);
        Assert.Equal(64, (await ToolProcess.RunAsync("kvstore", ["frobnicate"], Watchdog)).ExitCode);
        Assert.Equal(64, (await ToolProcess.RunAsync("kvstore", ["fill", store, "--writers"], Watchdog)).ExitCode);
    }

    [Fact]
    public async Task TheSampleRunsOnTheTestingDevices_ACrashSimDeviceLosesWhatWasNotFlushed()
    {
        // The store on crash-simulating devices, the simplest crash test a user of Journal.Testing writes.
        using var log = new CrashSimBlockDevice(1024, "journal.log");
        using var home = new CrashSimBlockDevice(16 * KeySlot.Sectors, "keys.dat");
        var store = KeyValueStore.Create(log, home);
        await store.PutAsync("durable", "yes");                            // forced: survives any crash
        var logImage = log.CrashImageLosingAll();
        var homeImage = home.CrashImageLosingAll();
        using var logAfter = CrashSimBlockDevice.FromImage(logImage);
        using var homeAfter = CrashSimBlockDevice.FromImage(homeImage);
        var reopened = KeyValueStore.Open(logAfter, homeAfter);
        Assert.True(reopened.TryGet("durable", out var value));
        Assert.Equal("yes", value);
        Assert.Equal(1, reopened.Journal.RecoveredItemsApplied);            // from the log: the slot was never written
        await reopened.CloseAsync();
        await store.CloseAsync();
    }
}
