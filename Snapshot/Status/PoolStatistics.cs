namespace Snapshot;

/// <summary>Counters of one bounded object pool (pending exceptions, copy jobs).</summary>
/// <param name="Name">The pool's name.</param>
/// <param name="Budget">Objects the pool recycles; beyond this, objects come from the reserve or are fresh.</param>
/// <param name="Reserve">Preallocated emergency objects.</param>
/// <param name="InUse">Objects handed out now (pooled and emergency).</param>
/// <param name="PeakInUse">Most objects handed out at once.</param>
/// <param name="Emergency">Emergency objects (reserve or fresh) handed out now.</param>
/// <param name="PeakEmergency">Most emergency objects handed out at once.</param>
/// <param name="EmergencyTotal">Emergency objects handed out since the store was opened.</param>
public readonly record struct PoolStatistics(string Name, int Budget, int Reserve, int InUse, int PeakInUse, int Emergency, int PeakEmergency, long EmergencyTotal)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{Name}: in use {InUse} (peak {PeakInUse}) of budget {Budget}, emergency {Emergency} (peak {PeakEmergency}, total {EmergencyTotal}), reserve {Reserve}";
}
