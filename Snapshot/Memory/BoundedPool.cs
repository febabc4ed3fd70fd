namespace Snapshot.Memory;

/// <summary>
/// A pool of reusable objects with a fixed budget and an emergency reserve. <see cref="Rent"/> never fails: it hands
/// out a pooled object while fewer than <c>budget</c> are in use, else an object from the preallocated reserve, else
/// (reserve exhausted) a freshly allocated emergency object. Reserve and fresh objects are both counted as
/// emergency objects (current and peak), so an operator can see the critical path running on its fallback.
/// </summary>
/// <remarks>
/// Locking: <c>_lock</c> protects the free stack and counters; a leaf, held for a few instructions. The factory runs
/// under it only for fresh emergency objects beyond the reserve (rare), and must not take other locks.
/// </remarks>
internal sealed class BoundedPool<T> where T : class
{
    private readonly object _lock = new();
    private readonly Func<T> _factory;
    private readonly Stack<T> _free = new();
    private readonly Stack<T> _reserve = new();
    private readonly HashSet<T>? _emergencyOut;
    private readonly int _budget;
    private readonly int _reserveSize;
    private int _created;       // pooled objects ever created (<= budget)
    private int _inUse;         // pooled objects out
    private int _peakTotal;     // most objects out at once (pooled + emergency)
    private int _emergency;     // reserve + fresh objects out
    private int _peakEmergency;
    private long _emergencyTotal;

    public BoundedPool(string name, int budget, int reserve, Func<T> factory)
    {
        Name = name;
        _budget = Math.Max(1, budget);
        _reserveSize = Math.Max(0, reserve);
        _factory = factory;
        for (int i = 0; i < _reserveSize; i++) _reserve.Push(factory());
        _emergencyOut = new HashSet<T>(ReferenceEqualityComparer.Instance);
    }

    public string Name { get; }

    /// <summary>Takes an object (never fails, see the class remarks).</summary>
    public T Rent()
    {
        lock (_lock)
        {
            if (_inUse < _budget)
            {
                _inUse++;
                if (_inUse + _emergency > _peakTotal) _peakTotal = _inUse + _emergency;
                if (_free.Count > 0) return _free.Pop();
                _created++;
                return _factory();
            }
            _emergency++;
            _emergencyTotal++;
            if (_emergency > _peakEmergency) _peakEmergency = _emergency;
            if (_inUse + _emergency > _peakTotal) _peakTotal = _inUse + _emergency;
            T e = _reserve.Count > 0 ? _reserve.Pop() : _factory();
            _emergencyOut!.Add(e);
            return e;
        }
    }

    /// <summary>Gives an object back (a reserve object refills the reserve; a fresh emergency object is dropped).</summary>
    public void Return(T item)
    {
        lock (_lock)
        {
            if (_emergencyOut!.Remove(item))
            {
                _emergency--;
                if (_reserve.Count < _reserveSize) _reserve.Push(item);
                return;
            }
            _inUse--;
            if (_inUse < 0) throw new InvalidOperationException($"pool {Name}: returned more objects than were rented");
            _free.Push(item);
        }
    }

    /// <summary>Counters now.</summary>
    public PoolStatistics Statistics
    {
        get
        {
            lock (_lock)
                return new PoolStatistics(Name, _budget, _reserveSize, _inUse + _emergency, _peakTotal, _emergency, _peakEmergency, _emergencyTotal);
        }
    }
}
