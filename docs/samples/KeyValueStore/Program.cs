using System.Globalization;
using Journal;
using Samples.KeyValue;

// kvstore: the key-value store sample as a command. Exit codes: 0 done, 1 key not found, 2 failure, 64 usage.
const string Usage = """
    usage: kvstore put <folder> <key> <value>
           kvstore get <folder> <key>
           kvstore delete <folder> <key>
           kvstore list <folder>
           kvstore fill <folder> [--writers N] [--keys N] [--puts N] [--log-size BYTES]
           kvstore crash-check [--seed N] [--puts N] [--states N]
    """;

try
{
    return args switch
    {
        ["put", var folder, var key, var value] => await WithStoreAsync(folder, async s => { await s.PutAsync(key, value); return 0; }),
        ["get", var folder, var key] => await WithStoreAsync(folder, s =>
        {
            if (!s.TryGet(key, out var value)) { Console.Error.WriteLine($"kvstore: {key}: no such key"); return Task.FromResult(1); }
            Console.WriteLine(value);
            return Task.FromResult(0);
        }),
        ["delete", var folder, var key] => await WithStoreAsync(folder, async s => await s.DeleteAsync(key) ? 0 : 1),
        ["list", var folder] => await WithStoreAsync(folder, s =>
        {
            foreach (var (k, v) in s.Entries()) Console.WriteLine($"{k}={v}");
            return Task.FromResult(0);
        }),
        ["fill", var folder, .. var rest] => await FillAsync(folder, Options(rest)),
        ["crash-check", .. var rest] => await CrashCheckAsync(Options(rest)),
        _ => UsageError(),
    };
}
catch (FormatException e)
{
    Console.Error.WriteLine($"kvstore: {e.Message}");
    Console.Error.Write(Usage);
    return 64;
}
catch (Exception e) when (e is JournalException or IOException or InvalidDataException or ArgumentException)
{
    Console.Error.WriteLine($"kvstore: {e.Message}");
    return 2;
}

static int UsageError()
{
    Console.Error.Write(Usage);
    return 64;
}

// Opens the store (creating it if needed), reports what recovery did, runs the command and closes the store cleanly.
static async Task<int> WithStoreAsync(string folder, Func<KeyValueStore, Task<int>> command, long logBytes = KeyValueStore.DefaultLogBytes)
{
    await using var store = await KeyValueStore.OpenFolderAsync(folder, logBytes);
    var j = store.Journal;
    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"kvstore: opened {folder}: {store.Count} keys; recovery replayed {j.RecoveredCheckpoints} checkpoints ({j.RecoveredItemsApplied} key copies applied, {j.RecoveredItemsSkipped} already home)"));
    return await command(store);
}

// --name value pairs.
static Dictionary<string, long> Options(string[] rest)
{
    var options = new Dictionary<string, long>(StringComparer.Ordinal);
    for (int i = 0; i < rest.Length; i += 2)
    {
        if (!rest[i].StartsWith("--", StringComparison.Ordinal) || i + 1 == rest.Length || !long.TryParse(rest[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out long v))
            throw new FormatException($"bad option near '{rest[i]}': options are --name <number>");
        options[rest[i][2..]] = v;
    }
    return options;
}

// Writers each own some keys and put "v<n>" into them in turn, n counting up per writer; after each put returns
// (durable) the writer prints "acked <count> <key> <value>". Runs until --puts puts in all (0: until killed).
static async Task<int> FillAsync(string folder, Dictionary<string, long> options)
{
    int writers = (int)options.GetValueOrDefault("writers", 4), keys = (int)options.GetValueOrDefault("keys", 64);
    long puts = options.GetValueOrDefault("puts", 0), logBytes = options.GetValueOrDefault("log-size", KeyValueStore.DefaultLogBytes);
    if (writers < 1 || keys < writers) throw new FormatException("--writers must be at least 1 and --keys at least --writers");
    return await WithStoreAsync(folder, async store =>
    {
        long started = 0, acked = 0;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            for (long n = 0; puts == 0 || Interlocked.Increment(ref started) <= puts; n++)
            {
                string key = $"key-{w}-{n % (keys / writers)}", value = $"v{n}";
                await store.PutAsync(key, value);
                Console.WriteLine($"acked {Interlocked.Increment(ref acked)} {key} {value}");
            }
        })));
        Console.Error.WriteLine($"kvstore: {acked} puts by {writers} writers");
        return 0;
    }, logBytes);
}

static async Task<int> CrashCheckAsync(Dictionary<string, long> options)
{
    var result = await CrashCheck.RunAsync((int)options.GetValueOrDefault("seed", 1),
        (int)options.GetValueOrDefault("puts", 1000), (int)options.GetValueOrDefault("states", 200));
    Console.WriteLine(result);
    return result.Failures.Count == 0 ? 0 : 2;
}
