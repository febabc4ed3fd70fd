using System.Collections.Concurrent;
using System.Globalization;
using Journal.Testing;

namespace Samples.KeyValue;

/// <summary>What <see cref="CrashCheck.RunAsync"/> found.</summary>
/// <param name="Puts">Puts acknowledged by the workload.</param>
/// <param name="States">Crash states recovered and checked.</param>
/// <param name="Torn">Crash states in which some write was torn.</param>
/// <param name="Replayed">Crash states whose log had checkpoints to replay.</param>
/// <param name="Failures">One line per crash state that lost an acknowledged put or failed to open.</param>
public sealed record CrashCheckResult(int Puts, int States, int Torn, int Replayed, IReadOnlyList<string> Failures)
{
    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"crash check: {Puts} puts, {States} crash states ({Torn} with torn writes, {Replayed} replaying the log): ") +
        (Failures.Count == 0 ? "every acknowledged put survived" : $"{Failures.Count} failed\n  " + string.Join("\n  ", Failures));
}

/// <summary>
/// A crash test of the store with the journal's testing devices (<c>Journal.Testing</c>, package
/// <c>JournalStore.Journal.Testing</c>): the log and the home device are <see cref="RecordingBlockDevice"/>s sharing
/// one <see cref="WriteLog"/>, which records every write and flush of both in one order. A concurrent workload of puts runs once; then the store is reopened from every
/// crash state the log yields (at each flush point, with the writes in flight kept, lost, torn or reordered) and every
/// put acknowledged before that point must be there, with its value or a later one.
/// </summary>
public static class CrashCheck
{
    private const int Writers = 4, KeysPerWriter = 8;

    /// <summary>Runs the workload of <paramref name="puts"/> puts and checks at most <paramref name="maxStates"/> crash points.</summary>
    public static async Task<CrashCheckResult> RunAsync(int seed, int puts, int maxStates)
    {
        var writes = new WriteLog();
        using var log = new RecordingBlockDevice(new MemoryBlockDevice(512, "journal.log"), writes);  // 256 KiB: it wraps
        using var home = new RecordingBlockDevice(new MemoryBlockDevice(4 * KeySlot.Sectors, "keys.dat"), writes); // grows
        var options = KeyValueStore.OptionsFor(log.Length);
        var store = KeyValueStore.Create(log, home, options);
        int firstPoint = writes.Count; // crash states from here on: the log is formatted

        // Each writer puts "<n>" into its keys in turn; "acked <key> <n>" marks the point from which the put must survive.
        int acked = 0;
        await Task.WhenAll(Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            for (int n = 1; n <= puts / Writers; n++)
            {
                string key = $"w{w}-{n % KeysPerWriter}";
                await store.PutAsync(key, n.ToString(CultureInfo.InvariantCulture));
                writes.Mark($"acked {key} {n}");
                Interlocked.Increment(ref acked);
            }
        })));
        await store.CloseAsync();

        // The newest acknowledged value of every key, as of each point of the write log.
        var entries = writes.Entries;
        var ackedAt = new List<(int Point, string Key, int N)>();
        foreach (var e in entries)
            if (e.Kind == WriteLogEntryKind.Mark && e.Note!.Split(' ') is ["acked", var key, var n])
                ackedAt.Add((e.Index + 1, key, int.Parse(n, CultureInfo.InvariantCulture)));

        var failures = new ConcurrentBag<string>();
        int states = 0, torn = 0, replayed = 0;
        foreach (var state in writes.CrashStates(new CrashStateOptions { Seed = seed, MaxPoints = maxStates, FirstPoint = firstPoint }))
        {
            states++;
            if (state.Torn.Count > 0) torn++;
            KeyValueStore reopened;
            try
            {
                reopened = KeyValueStore.Open(state.Device(log.DeviceId), state.Device(home.DeviceId), options);
            }
            catch (Exception e)
            {
                failures.Add($"{state}: open failed: {e.Message}");
                continue;
            }
            if (reopened.Journal.RecoveredCheckpoints > 0) replayed++;
            var must = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (point, key, n) in ackedAt)
                if (point <= state.Point) must[key] = n;
            foreach (var (key, n) in must)
                if (!reopened.TryGet(key, out var value) || int.Parse(value, CultureInfo.InvariantCulture) < n)
                    failures.Add($"{state}: key {key} holds {(value is null ? "nothing" : value)}, acknowledged {n}");
            await reopened.CloseAsync();
        }
        return new CrashCheckResult(acked, states, torn, replayed, failures.ToArray());
    }
}
