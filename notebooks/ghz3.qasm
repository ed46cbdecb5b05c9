OPENQASM 3.0;
include "stdgates.inc";
// GHZ-3: ideally only 000 and 111; on fez, Fez's calibration noise adds the rest.
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
c = measure q;
