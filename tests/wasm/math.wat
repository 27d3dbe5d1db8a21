;; An import module: its name section names it "math"; it exports add(a, b).
(module $math
  (func (export "add") (param $a i32) (param $b i32) (result i32)
    (i32.add (local.get $a) (local.get $b))))
