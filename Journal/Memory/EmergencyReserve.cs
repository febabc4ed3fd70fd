namespace Journal.Memory;

/// <summary>
/// Buffers set aside when the journal starts, handed out only when the pool cannot serve a request in time, so that
/// the critical paths still progress (the minimal "emergency object" of a slab allocator that cannot grow). Use is
/// counted: how many emergency buffers are out now, the most ever out at once, and how many were ever handed out.
/// </summary>
/// <remarks>
/// Two kinds of slot: <b>push slots</b> (small, used only by the checkpoint push for its header, so committers can
/// never drain what the push needs) and <b>general slots</b> of <see cref="GeneralBufferBytes"/> each (committers'
/// shadow vectors after they have waited too long for the pool). Locking: <c>_lock</c> protects the free stacks and
/// counters; nothing is allocated, awaited or reported (<see cref="EpisodeStarted"/>) while it is held.
/// </remarks>
internal sealed class EmergencyReserve
{
    /// <summary>Bytes of each push slot (a checkpoint header fits).</summary>
    public const int PushBufferBytes = 64;

    /// <summary>Number of push slots (pushes in flight at once never exceed it; see the CIL's in-flight bound).</summary>
    public const int PushSlots = 4;

    private readonly object _lock = new();
    private readonly byte[][] _general;
    private int _generalFree;
    private readonly byte[][] _push;
    private int _pushFree;
    private readonly HashSet<byte[]> _owned = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<byte[]> _pushOwned = new(ReferenceEqualityComparer.Instance);
    private long _current, _max, _total;

    /// <summary>
    /// Called when a buffer is handed out while none was out (an emergency episode starts), after the lock is
    /// released; the argument is true for a push slot. The journal logs it.
    /// </summary>
    internal Action<bool>? EpisodeStarted;

    public EmergencyReserve(long reserveBytes, int generalBufferBytes)
    {
        GeneralBufferBytes = generalBufferBytes;
        int count = generalBufferBytes <= 0 ? 0 : (int)Math.Min(int.MaxValue, reserveBytes / generalBufferBytes);
        _general = new byte[count][];
        for (int i = 0; i < count; i++) { _general[i] = new byte[generalBufferBytes]; _owned.Add(_general[i]); }
        _generalFree = count;
        _push = new byte[PushSlots][];
        for (int i = 0; i < PushSlots; i++) { _push[i] = new byte[PushBufferBytes]; _owned.Add(_push[i]); _pushOwned.Add(_push[i]); }
        _pushFree = PushSlots;
    }

    /// <summary>Size of a general slot.</summary>
    public int GeneralBufferBytes { get; }

    /// <summary>Number of general slots.</summary>
    public int GeneralSlots => _general.Length;

    /// <summary>Emergency buffers out now.</summary>
    public long Current => Interlocked.Read(ref _current);

    /// <summary>The most emergency buffers ever out at once.</summary>
    public long Max => Interlocked.Read(ref _max);

    /// <summary>Emergency buffers ever handed out.</summary>
    public long Total => Interlocked.Read(ref _total);

    /// <summary>Takes a general slot of at least <paramref name="minLength"/> bytes, or null.</summary>
    public byte[]? TryTakeGeneral(int minLength)
    {
        if (minLength > GeneralBufferBytes) return null;
        byte[] b;
        bool first;
        lock (_lock)
        {
            if (_generalFree == 0) return null;
            b = _general[--_generalFree];
            _general[_generalFree] = null!;
            first = CountOut();
        }
        if (first) EpisodeStarted?.Invoke(false);
        return b;
    }

    /// <summary>Takes a push slot (at least <paramref name="minLength"/> bytes), or null when all are out.</summary>
    public byte[]? TryTakePush(int minLength)
    {
        if (minLength > PushBufferBytes) return null;
        byte[] b;
        bool first;
        lock (_lock)
        {
            if (_pushFree == 0) return null;
            b = _push[--_pushFree];
            _push[_pushFree] = null!;
            first = CountOut();
        }
        if (first) EpisodeStarted?.Invoke(true);
        return b;
    }

    /// <summary>True when <paramref name="buffer"/> belongs to this reserve.</summary>
    public bool Owns(byte[] buffer)
    {
        lock (_lock) return _owned.Contains(buffer);
    }

    /// <summary>Gives a buffer back to the reserve.</summary>
    public void Return(byte[] buffer)
    {
        lock (_lock)
        {
            if (!_owned.Contains(buffer)) throw new InvalidOperationException("buffer returned to the emergency reserve does not belong to it");
            if (_pushOwned.Contains(buffer)) _push[_pushFree++] = buffer;
            else _general[_generalFree++] = buffer;
            _current--;
        }
    }

    /// <summary>Counts a buffer out (under the lock); true when it is the only one out.</summary>
    private bool CountOut()
    {
        _current++;
        _total++;
        if (_current > _max) _max = _current;
        return _current == 1;
    }
}
