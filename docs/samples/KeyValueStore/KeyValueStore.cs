using System.Collections.Concurrent;
using Journal;
using Journal.Format;
using Journal.Storage;

namespace Samples.KeyValue;

/// <summary>
/// A durable key-value store on the journal: one <see cref="KeyItem"/> per key, each in a slot of a home device, every
/// change committed through a <see cref="MetadataJournal"/> on a log device. <see cref="PutAsync"/> and
/// <see cref="DeleteAsync"/> return once the change is durable: a crash from then on keeps it. Opening a store that
/// was not closed cleanly replays its log into the slots (<see cref="SlotRecoveryHandler"/>).
/// </summary>
/// <remarks>
/// <para>Every key stays in memory (the items); reads never touch a device. A key keeps its slot once it has one, also
/// when it is deleted; slots left empty by a crash are reused. The home device grows when the slots run out.</para>
/// <para>All members are safe to call from many threads at once; changes to one key are serialised by its item's
/// lock, and changes to different keys commit concurrently and share log flushes.</para>
/// </remarks>
public sealed class KeyValueStore : IAsyncDisposable
{
    /// <summary>The log file of a store folder.</summary>
    public const string LogFile = "journal.log";

    /// <summary>The home file of a store folder: the key slots.</summary>
    public const string HomeFile = "keys.dat";

    /// <summary>Log size of a new store folder.</summary>
    public const long DefaultLogBytes = 4 << 20;

    private readonly MetadataJournal _journal;
    private readonly BlockDevice? _log; // null when the journal owns its log file
    private readonly BlockDevice _home;
    private readonly bool _ownsDevices;
    private readonly ConcurrentDictionary<string, KeyItem> _items = new(StringComparer.Ordinal);
    private readonly object _slotLock = new(); // protects _freeSlots, _nextSlot and growth of the home device
    private readonly Stack<ulong> _freeSlots = new();
    private ulong _nextSlot;
    private readonly int _reserveBytes;

    private KeyValueStore(MetadataJournal journal, BlockDevice? log, BlockDevice home, bool ownsDevices)
    {
        _journal = journal;
        _log = log;
        _home = home;
        _ownsDevices = ownsDevices;
        // Enough log space for one key of the largest size, whatever the caller puts.
        _reserveBytes = (int)journal.EstimateLogBytes(new LogItemSize(1, KeySlot.MaxLoggedBytes));
    }

    /// <summary>The journal the store commits through (statistics, recovery counts).</summary>
    public MetadataJournal Journal => _journal;

    /// <summary>Keys that have a value.</summary>
    public int Count => _items.Values.Count(i => i.Value is not null);

    /// <summary>Journal options for a log of <paramref name="logBytes"/>: the defaults, with smaller log buffers below 1 MiB.</summary>
    public static JournalOptions OptionsFor(long logBytes) => logBytes >= 1 << 20
        ? new JournalOptions { LogSizeBytes = logBytes }
        : new JournalOptions { LogSizeBytes = logBytes, LogBufferCount = 4, LogBufferSize = 8192 };

    /// <summary>
    /// Starts a new, empty store: formats <paramref name="log"/> as an empty log; <paramref name="home"/> must read as
    /// zeros (a new device). The devices stay the caller's.
    /// </summary>
    public static KeyValueStore Create(BlockDevice log, BlockDevice home, JournalOptions? options = null)
    {
        var journal = MetadataJournal.Create(LogRegion.WholeDevice(log), options ?? OptionsFor(log.Length));
        return new KeyValueStore(journal, log, home, ownsDevices: false);
    }

    #region Open
    /// <summary>
    /// Opens a store: replays what the log holds beyond the slots (after a crash), then loads every key from its slot.
    /// The devices stay the caller's unless <paramref name="ownsDevices"/>.
    /// </summary>
    public static KeyValueStore Open(BlockDevice log, BlockDevice home, JournalOptions? options = null, bool ownsDevices = false)
    {
        var handlers = new Dictionary<ushort, IItemRecoveryHandler> { [KeyItem.Type] = new SlotRecoveryHandler(home) };
        var journal = MetadataJournal.Open(LogRegion.WholeDevice(log), options ?? OptionsFor(log.Length), handlers);
        var store = new KeyValueStore(journal, log, home, ownsDevices);
        store.LoadSlots();
        return store;
    }
    #endregion

    /// <summary>
    /// Opens the store in <paramref name="folder"/> (files <see cref="LogFile"/> and <see cref="HomeFile"/>), creating it
    /// when the folder has no log yet. The journal opens (or makes) the log file itself and owns it; the home file is
    /// made before the log, so a log always has its home. Both files are locked against other openers until the store
    /// is closed.
    /// </summary>
    public static async Task<KeyValueStore> OpenFolderAsync(string folder, long logBytes = DefaultLogBytes, CancellationToken cancellationToken = default)
    {
        string logPath = Path.Combine(folder, LogFile), homePath = Path.Combine(folder, HomeFile);
        Directory.CreateDirectory(folder);
        if (File.Exists(logPath))
        {
            logBytes = new FileInfo(logPath).Length; // an existing log keeps its size (the options follow it)
        }
        else
        {
            File.Delete(homePath); // left by an interrupted create: no log ever referred to it
            FileBlockDevice.Create(homePath, 16 * KeySlot.Sectors).Dispose();
        }
        var home = FileBlockDevice.Open(homePath, lockExclusive: true);
        try
        {
            var handlers = new Dictionary<ushort, IItemRecoveryHandler> { [KeyItem.Type] = new SlotRecoveryHandler(home) };
            var journal = await MetadataJournal.OpenOrCreateAsync(logPath, OptionsFor(logBytes), handlers, cancellationToken).ConfigureAwait(false);
            var store = new KeyValueStore(journal, null, home, ownsDevices: true);
            store.LoadSlots();
            return store;
        }
        catch
        {
            home.Dispose();
            throw;
        }
    }

    /// <summary>Builds the items from the slots; empty slots below the last used one become free.</summary>
    private void LoadSlots()
    {
        long slots = _home.SectorCount / KeySlot.Sectors;
        var buffer = new byte[256 * KeySlot.Bytes];
        var empty = new List<ulong>();
        for (long first = 0; first < slots; first += 256)
        {
            int n = (int)Math.Min(256, slots - first);
            _home.Read(first * KeySlot.Sectors, buffer.AsSpan(0, n * KeySlot.Bytes));
            for (int i = 0; i < n; i++)
            {
                ulong slot = (ulong)(first + i);
                if (!KeySlot.TryRead(buffer.AsSpan(i * KeySlot.Bytes, KeySlot.Bytes), out var lsn, out var logged))
                {
                    empty.Add(slot);
                    continue;
                }
                var (key, value) = KeySlot.DecodeLogged(logged);
                if (!_items.TryAdd(key, new KeyItem(_home, slot, key, value, lsn)))
                    throw new InvalidDataException($"{_home.Name}: key {key} is in two slots (the second is {slot})");
                _nextSlot = slot + 1;
            }
        }
        for (int i = empty.Count - 1; i >= 0; i--)
            if (empty[i] < _nextSlot) _freeSlots.Push(empty[i]);
    }

    /// <summary>The value of <paramref name="key"/>, if it has one.</summary>
    public bool TryGet(string key, out string value)
    {
        value = _items.TryGetValue(key, out var item) ? item.Value! : null!;
        return value is not null;
    }

    /// <summary>Every key with a value, in ordinal order of the keys.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Entries() =>
        _items.Values.Select(i => (i.Key, i.Value)).Where(kv => kv.Value is not null)
            .OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, kv.Value!)).ToList();

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/>; returns once the change is durable.</summary>
    /// <exception cref="ArgumentException">The key is empty or longer than 255 UTF-8 bytes, or key and value exceed 996 bytes.</exception>
    public ValueTask PutAsync(string key, string value, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(value);
        return ChangeAsync(key, value, cancellationToken);
    }

    /// <summary>Deletes <paramref name="key"/>; returns once the change is durable. False if the key had no value.</summary>
    public async ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        if (!_items.TryGetValue(key, out var item) || item.Value is null) return false;
        await ChangeAsync(key, null, cancellationToken).ConfigureAwait(false);
        return true;
    }

    #region Put
    private async ValueTask ChangeAsync(string key, string? value, CancellationToken cancellationToken)
    {
        KeySlot.EncodeLogged(key, value); // refuse a bad key or value before anything changes
        var item = ItemFor(key);
        // Reserve log space before taking the item's lock: the reservation may wait for the journal to write items
        // home, and writing this item home needs its lock.
        using var tx = await _journal.BeginTransactionAsync(_reserveBytes, cancellationToken).ConfigureAwait(false);
        ulong sequence;
        using (await item.LockAsync(cancellationToken).ConfigureAwait(false))
        {
            string? old = item.Value;
            item.Set(value);
            try
            {
                tx.AddItem(item);
                sequence = await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                item.Set(old); // nothing was committed (cancelled, or the journal shut down)
                throw;
            }
        }
        // Durable once the checkpoint holding the commit is on stable storage; concurrent puts share the flush.
        await _journal.ForceAsync(sequence, cancellationToken).ConfigureAwait(false);
    }
    #endregion

    /// <summary>The item of <paramref name="key"/>, giving it a slot (and growing the home device) if it is new.</summary>
    private KeyItem ItemFor(string key)
    {
        if (_items.TryGetValue(key, out var item)) return item;
        lock (_slotLock)
        {
            if (_items.TryGetValue(key, out item)) return item;
            ulong slot = _freeSlots.Count > 0 ? _freeSlots.Pop() : _nextSlot++;
            long end = KeySlot.SectorOf(slot) + KeySlot.Sectors;
            if (end > _home.SectorCount) _home.Extend(Math.Max(end, 2 * _home.SectorCount)); // durable with the next write-back's flush
            item = new KeyItem(_home, slot, key, null, Lsn.Zero);
            _items[key] = item;
            return item;
        }
    }

    /// <summary>
    /// Closes the store: the journal writes every key home and closes its log cleanly (see
    /// <see cref="MetadataJournal.CloseAsync"/>); devices the store opened are closed whatever happens.
    /// </summary>
    public async ValueTask CloseAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await _journal.CloseAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (_ownsDevices)
            {
                _home.Dispose();
                _log?.Dispose();
            }
        }
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync() => CloseAsync();
}
